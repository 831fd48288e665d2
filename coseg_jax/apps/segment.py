r"""Co-segments whole folders of images with instant group co-segmentation (Algorithm 1).

  coseg-segment --checkpoint=runs/demo --images=photos/ --out=out/
  coseg-segment --checkpoint=runs/csa/best --images=groups/ --out=out/ --reduce=min \
      --save_attention
  python -m coseg_jax.apps.segment ...   # the same

``--images`` (comma-separated) is a folder of images (one group), a folder of sub-folders
of images (one group each, co-segmented separately), several folders of images (one group
each, named after the folder), or a list of image files (one group). Files this command
writes (``*_mask.png``, ``*_overlay.png``, ...) are never read as images, so running it
again over the same folders gives the same masks. Every image is read with
``coseg_jax.data.images.read_image`` (grey, palette, RGBA, 16-bit and EXIF orientation
handled), resized to S x S for the model, and its S x S foreground probability map resized
back to the image's size (bilinear) and binarised (``coseg_jax.maps``: 0.5, adaptive or otsu).
A file that cannot be read as an image (truncated, corrupt) is skipped with a warning naming
it, and listed again at the end; ``--on_unreadable=error`` stops at it instead.
Written per group (in ``--out``, or ``--out/<group>/`` when there are several groups):

* ``<stem>_mask.png``: the mask, 0/255, at the image's original size;
* ``<stem>_overlay.png``: the mask tinted green over the image;
* with ``--save_probs``, ``<stem>_prob.png``: the foreground probability as an 8-bit grey
  image (round(255 p)) at the original size, the soft map co-saliency metrics read;
* ``contact_sheet.png``: thumbnails of all the overlays in a grid, captioned with the
  file name and the foreground fraction;
* with ``--save_attention``, ``<stem>_attention.png``: the spatial attention of §3.3 /
  Fig. 7, sigmoid of the channel mean of the pool5 features, upsampled, stretched to
  its own min..max and coloured blue (low) to red (high) over the image (for CA / FCA
  models a picture of the features, which only CSA uses); and for several groups
  ``<out>/attention_pca.png``: the images' channel-attention vectors projected on their
  first two principal components, coloured by group (Fig. 6).
"""

import pathlib

from absl import flags
import numpy as np
import tqdm

from coseg_jax import config as config_lib, files as files_lib, group, maps, pictures, plots, runs
from coseg_jax.apps import cli
from coseg_jax.constants import THRESHOLD
from coseg_jax.data import folders, images
from coseg_jax.data.resize import resize_image
from coseg_jax.errors import BadValue
from coseg_jax.models import CoSegNet, check_size
from coseg_jax.models.attention import REDUCTIONS

SHEET_CELL = 160
# What this command writes beside each image: never read back as an image.
MASK, OVERLAY, PROB, ATTENTION = OUTPUT_SUFFIXES = ("_mask", "_overlay", "_prob", "_attention")
SHEET, PCA = OUTPUT_NAMES = ("contact_sheet", "attention_pca")
ON_UNREADABLE = ("skip", "error")


def is_output(path):
  """True for a file name this command writes (``<stem>_mask.png``, ``contact_sheet.png``)."""
  path = pathlib.Path(path)
  return path.suffix == ".png" and (path.stem in OUTPUT_NAMES
                                    or path.stem.endswith(OUTPUT_SUFFIXES))


def find_groups(paths):
  """``--images`` values -> [(group name, [image paths])] (see the module docstring)."""
  paths = [pathlib.Path(p).expanduser() for p in paths]
  for path in paths:
    if not path.exists():
      raise FileNotFoundError(f"--images {path}: no such file or folder")
  if len(paths) == 1 and paths[0].is_dir():
    try:
      dataset = folders.scan(paths[0], layout="plain")
    except images.MissingDataError as e:
      raise images.MissingDataError(
          f"--images {paths[0]}: no image files in it or in its sub-folders (extensions: "
          f"{', '.join(sorted(images.IMAGE_EXTENSIONS))})") from e
    return _without_outputs([(g.name, list(g.images)) for g in dataset.groups])
  if len(paths) > 1 and all(p.is_dir() for p in paths):
    return _without_outputs(_folder_groups(paths))
  wrong = [str(p) for p in paths if p.is_dir() or not images.is_image_file(p)]
  if wrong:
    raise BadValue(f"--images takes folders or a list of image files, not both; not image "
                   f"files: "
                   f"{', '.join(wrong)}")
  stems = [p.stem for p in paths]
  clashes = sorted({str(p) for p in paths if stems.count(p.stem) > 1})
  if clashes:
    raise BadValue(f"--images: files with the same name stem would overwrite each other's "
                   f"outputs: {', '.join(clashes)}")
  return [("images", paths)]


def _without_outputs(groups):
  """The groups without this command's outputs; a group left empty is an error."""
  kept = [(name, [p for p in paths if not is_output(p)]) for name, paths in groups]
  empty = [name for name, paths in kept if not paths]
  if empty:
    raise images.MissingDataError(f"--images: groups {empty} hold only this command's outputs "
                                  "(*_mask.png, *_overlay.png, ...), no images")
  return kept


def _folder_groups(paths):
  """Several ``--images`` folders -> one group each, named after the folder."""
  names = [p.absolute().name for p in paths]
  clashes = sorted({str(p) for p, name in zip(paths, names) if names.count(name) > 1})
  if clashes:
    raise BadValue(f"--images: folders with the same name would write to the same output "
                   f"folder: {', '.join(clashes)}")
  groups = []
  for path, name in zip(paths, names):
    files = [p for p in sorted(path.iterdir()) if p.is_file() and images.is_image_file(p)]
    if not files:
      raise images.MissingDataError(f"--images {path}: no image files in it (extensions: "
                                    f"{', '.join(sorted(images.IMAGE_EXTENSIONS))})")
    groups.append((name, files))
  return groups


def load_inputs(files, image_size):
  """Reads ``files`` -> uint8 [N, S, S, 3], each image resized to S x S (bilinear)."""
  return np.stack([resize_image(images.read_image(path), image_size) for path in files])


def readable(files, image_size, on_unreadable="skip", log=print):
  """(the files that read as images, their uint8 [N, S, S, 3] inputs, the files skipped).

  ``on_unreadable``: "skip" (a warning naming the file) or "error" (its ``ImageReadError``).
  """
  if on_unreadable not in ON_UNREADABLE:
    raise BadValue(f"--on_unreadable={on_unreadable!r}: expected one of {ON_UNREADABLE}")
  kept, inputs, skipped = [], [], []
  for path in files:
    try:
      inputs.append(resize_image(images.read_image(path), image_size))
    except images.ImageReadError as e:
      if on_unreadable == "error":
        raise
      log(f"warning: skipped {path}: {cli.message(e)}")
      skipped.append(path)
      continue
    kept.append(path)
  return kept, (np.stack(inputs) if inputs else None), skipped


def spatial_attention(model, variables, inputs, chunk_size=8):
  """(the model's spatial attention alpha^s [N, h, w], channel attention [N, C]) of every image."""
  features, alphas = group.group_attention(model, variables, inputs, chunk_size)
  heat = [model.apply(variables, f, method=CoSegNet.spatial_attention)[..., 0] for f in features]
  return np.concatenate([np.asarray(h, np.float32) for h in heat])[:len(alphas)], alphas


def pca_2d(vectors):
  """Rows of ``vectors`` [N, C] projected on their first two principal components -> [N, 2]."""
  x = np.asarray(vectors, np.float64)
  x = x - x.mean(axis=0)
  u, s, _ = np.linalg.svd(x, full_matrices=False)
  points = u[:, :2] * s[:2]
  return np.pad(points, ((0, 0), (0, 2 - points.shape[1])))


def write_group(out_dir, files, probs, heat=None, save_probs=False, threshold=THRESHOLD,
                refine=None):
  """Writes masks, overlays (soft maps, attention maps) of one group and its contact sheet.

  ``probs``: P(foreground) [N, S, S]; ``heat``: spatial attention [N, h, w] or None;
  ``threshold``: a number, "adaptive" or "otsu" (``maps.binarize`` of each full-size map);
  ``refine``: a ``maps.refiner`` applied to each full-size map with its image, or None.
  Returns the contact sheet's path.
  """
  out_dir = pathlib.Path(out_dir)
  thumbs, captions = [], []
  for n, path in enumerate(files):
    image = images.read_image(path)
    soft, mask = maps.decide(maps.to_original_size(probs[n], image.shape[:2]), image,
                             threshold, refine)
    pictures.save(out_dir / f"{path.stem}{MASK}.png", pictures.mask_image(mask))
    if save_probs:
      pictures.save(out_dir / f"{path.stem}{PROB}.png", pictures.probability_image(soft))
    shown = pictures.overlay(image, mask)
    pictures.save(out_dir / f"{path.stem}{OVERLAY}.png", shown)
    if heat is not None:
      upsampled = pictures.stretch(maps.to_original_size(heat[n], image.shape[:2]))
      pictures.save(out_dir / f"{path.stem}{ATTENTION}.png",
                    pictures.heatmap(image, upsampled))
    thumbs.append(pictures.thumbnail(shown, SHEET_CELL))
    captions.append(f"{path.name} {mask.mean():.0%}")
  return pictures.save(out_dir / f"{SHEET}.png",
                       pictures.contact_sheet(thumbs, captions, SHEET_CELL))


def segment_folder(checkpoint, image_paths, out, *, reduce="mean", leave_one_out=False,
                   chunk_size=8, image_size=None, save_attention=False, save_probs=False,
                   threshold=None, partner_gate=None, refine=None, vgg16_weights=None,
                   on_unreadable="skip", log=print):
  """Co-segments every group of ``image_paths`` and writes the pictures to ``out``.

  ``threshold`` / ``partner_gate`` / ``refine`` None: the run's ``config.eval.threshold`` /
  ``partner_gate`` / ``refine`` (what its evaluation used). ``on_unreadable``: "skip" a
  file that cannot be read as an image (a warning names it; a summary at the end lists
  them all) or "error" (stop at it).
  Returns {group name: its output folder}.
  """
  groups = find_groups(image_paths)
  if chunk_size < 1:
    raise BadValue(f"--chunk_size={chunk_size}: expected a positive integer")
  if threshold is not None:
    threshold = maps.parse_threshold(threshold, "--threshold")
  if refine is not None:
    maps.refiner(refine)  # an unknown name, or a missing package, before any work
  if image_size:
    check_size(image_size, "--image_size")
  check_out_apart(pathlib.Path(out), image_paths)  # before the folder is created
  out = files_lib.writable_folder(out, "--out")
  config, model, variables = runs.load_run(checkpoint=checkpoint, warn=log,
                                           vgg16_weights=vgg16_weights)
  size = image_size or config.data.image_size
  if threshold is None:
    threshold = maps.parse_threshold(config.eval.threshold, "the run's config.eval.threshold")
    log(f"threshold {threshold} (the run's config.eval.threshold; --threshold to change it)")
  if partner_gate is None:
    partner_gate = config_lib.gate_by_default(config)
    log(f"partner gate {'on' if partner_gate else 'off'} (the run's recipe, config.recipe="
        f"{config.recipe!r}; --partner_gate / --nopartner_gate to change it)")
  gate = config_lib.recipe_gate(config) if partner_gate else None
  if partner_gate and gate is None:
    raise BadValue(f"--partner_gate: the run's recipe (config.recipe={config.recipe!r}) "
                   "offers no gate; the real-photo recipe's runs (configs/cpu_frozen.py) do")
  if refine is None:
    log(f"refinement {config.eval.refine or 'none'} (the run's config.eval.refine; --refine "
        "to change it)")
  refiner = maps.configured_refiner(config.eval, refine)
  written, alphas, labels, skipped = {}, [], [], []
  for name, files in tqdm.tqdm(groups, desc="segment", unit="group", leave=False,
                               disable=len(groups) < 2, dynamic_ncols=True):
    files, inputs, unread = readable(files, size, on_unreadable, log)
    skipped += unread
    if not files:
      log(f"warning: {name}: no readable image, nothing written")
      continue
    probs = group.segment_group(model, variables, inputs, reduce, chunk_size, leave_one_out,
                                gate=gate)
    heat = None
    if save_attention:
      heat, group_alphas = spatial_attention(model, variables, inputs, chunk_size)
      alphas.append(group_alphas)
      labels += [name] * len(files)
    written[name] = out / name if len(groups) > 1 else out
    write_group(written[name], files, probs, heat, save_probs, threshold, refiner)
    log(f"{name}: {len(files)} images -> {written[name]}")
  if save_attention and len(groups) > 1:
    path = plots.attention_embedding(pca_2d(np.concatenate(alphas)), labels,
                                     out / f"{PCA}.png")
    log(f"channel-attention PCA -> {path}")
  if skipped:
    log(f"skipped {len(skipped)} unreadable file(s) (--on_unreadable=error stops at them): "
        + ", ".join(map(str, skipped)))
  if not written:
    raise images.ImageReadError(f"--images: no file could be read as an image "
                                f"({', '.join(map(str, skipped))})")
  return written


def check_out_apart(out, image_paths):
  """Refuses an ``--out`` inside an ``--images`` folder: a rerun would take it for a group of
  images. ``--out`` may be the folder itself (the outputs lie beside the images, and are
  never read as images)."""
  out = out.resolve()
  for path in image_paths:
    folder = pathlib.Path(path).expanduser().resolve()
    if folder.is_dir() and out != folder and out.is_relative_to(folder):
      raise BadValue(f"--out {out} is inside the --images folder {folder}: a rerun would "
                     "read it as a group of images; give a folder outside it (or the "
                     "folder itself)")


def define(fv):
  """The command's flags."""
  flags.DEFINE_string("checkpoint", None, "A training workdir, its checkpoints/ folder or best "
                      "(the best validated step), a step folder, or a released .npz/.pkl file.", flag_values=fv)
  flags.DEFINE_list("images", None, "A folder (of images, or of sub-folders = groups), several "
                    "folders (a group each) or image files (one group), comma-separated.", flag_values=fv)
  flags.DEFINE_string("out", None, "Output folder.", flag_values=fv)
  flags.DEFINE_enum("reduce", "mean", REDUCTIONS, "Group attention: mean (Group Average) or min "
                    "(Group Minimum).", flag_values=fv)
  flags.DEFINE_bool("leave_one_out", False, "Attend each image with the reduction over the "
                    "other images.", flag_values=fv)
  flags.DEFINE_integer("chunk_size", 8, "Images per compiled call (bounds device memory).", flag_values=fv)
  flags.DEFINE_integer("image_size", 0, "Model input size S (a multiple of 32); default: the "
                       "run's.", flag_values=fv)
  flags.DEFINE_bool("save_attention", False, "Also write spatial-attention heat maps and the "
                    "attention PCA plot.", flag_values=fv)
  flags.DEFINE_bool("save_probs", False, "Also write the foreground probabilities as 8-bit grey "
                    "PNGs.", flag_values=fv)
  flags.DEFINE_string("threshold", None, "Foreground where P(foreground) exceeds this, or "
                      "'adaptive' (each map's mean + std, at most 0.8) or 'otsu' (each map's Otsu "
                      "threshold). Default: the run's "
                      "config.eval.threshold (the paper configs: 0.5).", flag_values=fv)
  flags.DEFINE_enum("refine", None, list(maps.REFINERS), "Refine each map at the photo's size "
                    "with the photo, so that its edges follow the photo's: 'guided' "
                    "(maps.guided_filter), 'crf' (maps.dense_crf, the crf extra), '' none. "
                    "Default: the run's config.eval.refine.", flag_values=fv)
  flags.DEFINE_string("vgg16_weights", None, "A released model (coseg_jax.release) without "
                      "its encoder: the VGG16 weights it was trained with (default: the path "
                      "it records).", flag_values=fv)
  flags.DEFINE_enum("on_unreadable", "skip", list(ON_UNREADABLE), "A file that cannot be read "
                    "as an image (truncated, corrupt): skip it with a warning (and list it at "
                    "the end), or stop with an error.", flag_values=fv)
  flags.DEFINE_bool("partner_gate", None, "Keep in each image what resembles the other "
                    "images' foreground (the gate of the run's recipe, config.recipe). Default: "
                    "the recipe's choice (config.eval.partner_gate of the real-photo "
                    "recipe).", flag_values=fv)


def segment(fv, args):
  cli.no_arguments(args)
  for name in ("checkpoint", "images", "out"):
    if not fv[name].value:
      raise flags.Error(f"--{name} is required")
  return segment_folder(
      fv.checkpoint, fv.images, fv.out, reduce=fv.reduce, leave_one_out=fv.leave_one_out,
      chunk_size=fv.chunk_size, image_size=fv.image_size, save_attention=fv.save_attention,
      save_probs=fv.save_probs, threshold=fv.threshold, partner_gate=fv.partner_gate,
      refine=fv.refine, vgg16_weights=fv.vgg16_weights, on_unreadable=fv.on_unreadable)


def main(argv=None):
  """The ``coseg-segment`` console script."""
  cli.main(define, segment, argv, __doc__)


if __name__ == "__main__":
  main()
