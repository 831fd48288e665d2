"""Evaluation of a trained CoSegNet: the paper's tables (§4.3–4.4) from a checkpoint.

Modes (``MODES``):

* ``pairs``: the pair model over the pairs of a split (VOC 2012 val/test, the synthetic
  pairs, or every pair within each group of a folder dataset), scored at the model's
  input size S x S (masks resized nearest, as in training): the pooled Jaccard (the
  single VOC number of §4.3), the pooled precision and the mean per-image Jaccard,
  counted by ``eval_steps.evaluate``.
* ``pairs_all_foreground``: the same pairs, every pixel predicted foreground.
* ``pairwise``: every image of a group co-segmented with every other image, its
  foreground probabilities averaged over its N-1 pairs (Tables 1–3 and 5;
  ``group.segment_pairwise``).
* ``group_mean`` / ``group_min``: instant group co-segmentation (Algorithm 1) with the
  Group Average / Group Minimum Attention (Tables 4–5, Fig. 5; ``group.segment_group``).
* ``all_foreground``: every pixel of every group image foreground (a trivial baseline).
* ``center_box``: the middle half of each side of every group image foreground (a fixed
  box, the baseline that a co-segmentation model must beat to show it finds objects).
* ``distractor``: the distractor test (``coseg_jax.distractors``): every image with an
  object of another group pasted in, co-segmented once with an image of its own group
  and once with one of the pasted object's group; only the shared object is the target.
  A model that ignores the other image scores at most 50 % (the mean of the two
  targets); ``distractor_center_box`` and ``distractor_all_foreground`` are its baselines.
* ``pairwise_gate``, ``group_mean_gate``, ``group_min_gate``, ``distractor_gate``: the
  same with every map multiplied by the partner gate (``coseg_jax.partner_gate``).

The group modes score every image at its ORIGINAL resolution: the S x S probability map
is resized back to the image's H x W (bilinear), thresholded at 0.5 and compared with the
full-size ground-truth mask. Per-image Jaccard and precision are averaged within each
group (class), then over the groups (the tables' "Average" row). ``threshold="adaptive"``
binarises each map at min(mean + std, 0.8) instead (SSNM / UFO), and ``save_maps`` writes
the maps as 8-bit PNGs in the eval-co-sod layout, scored with S-, E-, F-measure and MAE
(``coseg_jax.sod_metrics``).
"""

import functools
import json
import os
import pathlib
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from PIL import Image
import tqdm

from coseg_jax import (checkpoints, distractors, eval_steps, group, metrics, models, sod_metrics,
                       weights)
from coseg_jax import config as config_lib
from coseg_jax.constants import STRIDE, THRESHOLD
from coseg_jax.data import folders, pipeline
from coseg_jax.parallel import Sharding, build_data

PAIR_MODES = ("pairs", "pairs_all_foreground")
BASELINE_MODES = ("all_foreground", "center_box")
MODEL_GROUP_MODES = ("pairwise", "group_mean", "group_min")
GATE = "_gate"  # suffix of a model mode with the partner gate
GROUP_MODES = (MODEL_GROUP_MODES + BASELINE_MODES
               + tuple(m + GATE for m in MODEL_GROUP_MODES))
DISTRACTOR_MODES = (("distractor", "distractor" + GATE)
                    + tuple(f"distractor_{m}" for m in BASELINE_MODES))
MODES = PAIR_MODES + GROUP_MODES + DISTRACTOR_MODES
DEFAULT_GROUP_MODES = MODEL_GROUP_MODES + BASELINE_MODES
DEFAULT_MODES = {"voc": PAIR_MODES, "synthetic": PAIR_MODES + DEFAULT_GROUP_MODES,
                 "folder": DEFAULT_GROUP_MODES}
RELEASED_IMAGE_SIZE = 512  # the released reference checkpoints were trained at 512x512


# ----------------------------------------------------------------------------- loading
def read_config(run_dir):
  """The training config saved as ``<run_dir>/config.json`` -> ``ml_collections.ConfigDict``
  with today's keys (``coseg_jax.config.migrate``: older runs have flat data keys)."""
  path = pathlib.Path(run_dir) / "config.json"
  if not path.is_file():
    raise FileNotFoundError(f"run config not found: {path} (train.py writes it; or pass the "
                            "experiment config with --config configs/X.py)")
  with open(path) as f:
    saved = json.load(f)
  if "config" not in saved:
    raise ValueError(f"{path} has no 'config' key (keys: {sorted(saved)}); is it a coseg_jax "
                     "run config?")
  return ml_collections.ConfigDict(config_lib.migrate(saved["config"]))


def _flatten(tree):
  """{"params/encoder/.../kernel": leaf} of a nested variables dict."""
  return {"/".join(str(getattr(k, "key", k)) for k in path): leaf
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def check_variables(model, variables, source):
  """Raises ``weights.WeightFileError`` naming the keys where ``variables`` do not fit ``model``."""
  expected = jax.eval_shape(lambda: weights.init_variables(model, jax.random.key(0), STRIDE))
  expected = {k: v.shape for k, v in _flatten(expected).items()}
  try:
    weights.check_state_dict(_flatten(variables), expected, source)
  except weights.WeightFileError as e:
    raise weights.WeightFileError(f"{e}\n  (config.model differs from the model that wrote "
                                  "the checkpoint: evaluate with that run's config)") from e


def released_run(path, config=None):
  """(config, model, variables) of a released reference checkpoint file (docs/reference.md).

  Without ``config`` the model is ``weights.reference_model()`` at its 512x512 input.
  """
  if config is None:
    config = ml_collections.ConfigDict({"data": {"image_size": RELEASED_IMAGE_SIZE}})
    model = weights.reference_model()
  else:
    model = models.build(config.model)
  return config, model, weights.load_reference_checkpoint(path, model)


def load_checkpoint(found, config=None, warn=print):
  """(config, model, variables, what was read) of a ``checkpoints.resolve`` result.

  ``config`` (e.g. from ``--config``) wins; without it the run's config.json is read. A
  run's unreadable newest step is skipped for the newest intact one (``warn`` names it).
  """
  if found.released:
    return (*released_run(found.path, config), found.path)
  config = read_config(found.run_dir) if config is None else config
  model = models.build(config.model)
  step_dir, variables = checkpoints.load_variables(found, warn)
  check_variables(model, variables, str(step_dir))
  return config, model, variables, step_dir


def load_run(workdir=None, checkpoint=None, config=None, warn=print):
  """(config, model, variables) of a trained run, or of a released checkpoint file.

  ``checkpoint`` is anything ``checkpoints.resolve`` takes (a workdir, a
  ``checkpoints``/``best`` folder, a step folder, a released .pkl/.pth/.npz file);
  ``workdir`` alone is the run's latest step, beside ``checkpoint`` the run folder
  holding config.json. A missing checkpoint raises ``checkpoints.CheckpointError``, a
  missing config.json ``FileNotFoundError``, each naming the path.
  """
  return load_checkpoint(resolve(workdir, checkpoint), config, warn)[:3]


def resolve(workdir=None, checkpoint=None):
  if workdir is None and checkpoint is None:
    raise ValueError("give a workdir or a checkpoint to evaluate")
  return checkpoints.resolve(checkpoint or workdir, run_dir=workdir if checkpoint else None)


# ----------------------------------------------------------------------------- metrics
def to_original_size(probs, size):
  """float [h, w] map -> float32 [H, W] = ``size``, bilinear (PIL)."""
  probs = np.asarray(probs, np.float32)
  height, width = size
  if probs.shape == (height, width):
    return probs
  return np.asarray(Image.fromarray(probs).resize((width, height), Image.Resampling.BILINEAR))


def original_size_counts(probs, masks, threshold=THRESHOLD):
  """Metric counts of S x S probabilities [N, S, S] against N full-size bool masks.

  Each map is resized to its mask's size (bilinear) and thresholded at ``threshold``
  (0.5, or "adaptive": ``sod_metrics.adaptive_threshold`` of each resized map).
  """
  return metrics.concat([
      metrics.counts(sod_metrics.binarize(to_original_size(p, m.shape), threshold)[None],
                     m[None].astype(np.uint8))
      for p, m in zip(probs, masks)])


def group_segmenters(model, variables, chunk_size=8):
  """{group mode: fn(inputs float32 [N, S, S, 3]) -> P(foreground) float32 [N, S, S]}."""
  def instant(reduce, gated):
    return lambda x: group.segment_group(model, variables, x, reduce, chunk_size,
                                         return_probs=True, partner_gate=gated)[1]
  def pairwise(gated):
    return lambda x: group.segment_pairwise(model, variables, x, chunk_size, return_probs=True,
                                            encode_once=True, partner_gate=gated)[1]
  segmenters = {
      "all_foreground": lambda x: np.ones(x.shape[:3], np.float32),
      "center_box": center_box,
  }
  for gated, suffix in ((False, ""), (True, GATE)):
    segmenters.update({"pairwise" + suffix: pairwise(gated),
                       "group_mean" + suffix: instant("mean", gated),
                       "group_min" + suffix: instant("min", gated)})
  return segmenters


def center_box(inputs):
  """P(foreground) [N, S, S]: 1 on the middle half of each side (rows and columns
  [S/4, 3S/4)), 0 elsewhere; at the original size it is the same box of the image."""
  n, height, width = inputs.shape[:3]
  probs = np.zeros((n, height, width), np.float32)
  probs[:, height // 4:height - height // 4, width // 4:width - width // 4] = 1
  return probs


def evaluate_groups(groups, segmenters, on_result=None, threshold=THRESHOLD, map_writer=None):
  """Per-class table of every mode over ``groups`` (dicts of ``pipeline.iterate_groups``).

  ``groups``: a function returning a fresh iterator of the groups (read once per mode, so
  that each mode finishes before the next starts), or an iterable of them.
  ``on_result(mode, result)`` is called as each mode finishes. ``threshold``: see
  ``original_size_counts``. ``map_writer(mode, group, maps)``, if given, receives each
  group's maps at the original size (``sod_metrics.MapWriter``).
  Returns {mode: {"classes": {group: {"jaccard", "precision", "images"}}, "average":
  {"jaccard", "precision"}, "seconds": wall time of the mode's segmentation}}.
  """
  if not callable(groups):
    groups = functools.partial(iter, list(groups))
  results = {}
  for mode, segment in segmenters.items():
    results[mode] = _evaluate_mode(groups(), mode, segment, threshold, map_writer)
    if on_result:
      on_result(mode, results[mode])
  return results


def _evaluate_mode(groups, mode, segment, threshold=THRESHOLD, map_writer=None):
  counts, names, seconds = [], [], 0.0
  for g in tqdm.tqdm(groups, desc=mode, unit="group", leave=False, dynamic_ncols=True):
    if g["masks"] is None:
      raise ValueError(f"group {g['name']} has no masks, so it cannot be scored (segment it "
                       "with `python -m coseg_jax.segment` instead)")
    names += [g["name"]] * len(g["masks"])
    start = time.perf_counter()
    try:
      probs = segment(g["inputs"])
    except ValueError as e:
      raise ValueError(f"mode {mode}, group {g['name']}: {e}") from e
    seconds += time.perf_counter() - start
    counts.append(original_size_counts(probs, g["masks"], threshold))
    if map_writer is not None:
      map_writer(mode, g, [to_original_size(p, m.shape) for p, m in zip(probs, g["masks"])])
  if not names:
    raise ValueError("no groups to evaluate")
  table = metrics.group_means(metrics.concat(counts), names)
  return {"classes": table, "average": metrics.class_average(table), "seconds": seconds}


def all_foreground_step(variables, batch):
  """``eval_steps.eval_step``'s counts [2B] when every pixel is predicted foreground."""
  del variables
  def counts(mask):
    return metrics.counts(jnp.ones(mask.shape, bool), mask, xp=jnp)
  return jax.tree.map(lambda a, b: jnp.concatenate([a, b]), counts(batch["mask_a"]),
                      counts(batch["mask_b"]))


def evaluate_pairs(config, model, variables, split, modes=PAIR_MODES, on_result=None):
  """{pair mode: ``eval_steps.evaluate`` result + "seconds"} over the pairs of ``split``."""
  sharding = Sharding.create()
  sharding.check_batch_size(config.batch_size)
  steps = {"pairs": eval_steps.compile_eval_step(model, sharding),
           "pairs_all_foreground": jax.jit(all_foreground_step)}
  variables = sharding.replicate(variables)
  results = {}
  for mode in modes:
    start = time.perf_counter()
    result = eval_steps.evaluate(steps[mode], variables, build_data(config, split, 0), sharding,
                                 desc=mode)
    results[mode] = {**result, "seconds": time.perf_counter() - start}
    if on_result:
      on_result(mode, results[mode])
  return results


# ----------------------------------------------------------------------------- runs
def resolve_modes(dataset, modes=None):
  """The modes to run on ``dataset`` (its defaults when ``modes`` is empty), checked."""
  modes = list(modes or DEFAULT_MODES[dataset])
  unknown = [m for m in modes if m not in MODES]
  if unknown:
    raise ValueError(f"unknown mode(s) {unknown}; expected some of {list(MODES)}")
  grouped = [m for m in modes if m in GROUP_MODES + DISTRACTOR_MODES]
  if dataset == "voc" and grouped:
    raise ValueError(f"modes {grouped} need groups, which VOC 2012 pairs do not have; use "
                     f"{list(PAIR_MODES)}")
  return modes


def check_groups(data_config, modes):
  """Raises, before any work, if the groups cannot be scored in ``modes`` (no masks, or
  a group of one image for ``pairwise``), naming the groups; reads no pixels."""
  if not set(modes) & set(GROUP_MODES + DISTRACTOR_MODES):
    return
  if data_config.dataset == "synthetic":
    if "pairwise" in modes and data_config.synthetic.group_size < 2:
      raise ValueError(f"mode pairwise needs at least 2 images per group; config.data."
                       f"synthetic.group_size = {data_config.synthetic.group_size}")
    return
  if data_config.dataset != "folder":  # a TFDS dataset was checked when it was built
    return
  dataset = folders.scan(data_config.root, layout=data_config.folder.layout,
                         groups=data_config.groups or None,
                         on_mismatch=data_config.folder.on_mismatch)
  unscored = [g.name for g in dataset.groups if g.masks is None]
  if unscored:
    raise ValueError(f"groups {unscored} of {data_config.root} have no masks, so they cannot "
                     "be scored (segment them with `python -m coseg_jax.segment` instead)")
  single = [g.name for g in dataset.groups if len(g.images) < 2]
  if set(modes) & set(DISTRACTOR_MODES) and len(dataset.groups) < 2:
    raise ValueError(f"the distractor modes need at least two groups; {data_config.root} "
                     f"has {len(dataset.groups)} (choose them with --config.data.groups)")
  if "pairwise" in modes and single:
    raise ValueError(f"mode pairwise needs at least 2 images per group; groups {single} of "
                     f"{data_config.root} have one (leave pairwise out with --modes, or "
                     "choose groups with --config.data.groups)")


def dataset_name(data_config):
  """The dataset's name in reports: a folder dataset's folder name, a TFDS dataset's name
  ("voc2012_coseg_512"), else the dataset kind."""
  if data_config.dataset == "folder":
    return pathlib.Path(data_config.root).expanduser().absolute().name
  if data_config.dataset == "tfds":
    return data_config.tfds.name.replace("/", "_")
  return data_config.dataset


def parse_threshold(value):
  """``--threshold``: "adaptive" or a number in (0, 1) -> "adaptive" or float."""
  if value == "adaptive":
    return value
  try:
    threshold = float(value)
  except (TypeError, ValueError):
    threshold = None
  if threshold is None or not 0 < threshold < 1:
    raise ValueError(f"threshold={value!r}: expected 'adaptive' or a number in (0, 1)")
  return threshold


def map_writer(save_maps, method, data_config, modes):
  """A ``sod_metrics.MapWriter`` for the group ``modes``, or None when ``save_maps`` is empty."""
  if not save_maps:
    return None
  group_modes = [m for m in modes if m in GROUP_MODES]
  if not group_modes:
    raise ValueError(f"save_maps={save_maps!r}: maps come from the group modes "
                     f"{list(GROUP_MODES)}, and none of {modes} is one")
  return sod_metrics.MapWriter(save_maps, method, dataset_name(data_config), group_modes)


def run(*, config=None, workdir=None, checkpoint=None, modes=None, split="test", chunk_size=8,
        out=None, log=print, threshold=THRESHOLD, save_maps=None, method="coseg_jax"):
  """Evaluates a checkpoint in ``modes`` -> the report (see ``write_report``).

  The data is checked before any work; the report is written to ``out`` (default
  ``default_out_path``) after each mode, so a finished mode is never lost.
  ``threshold`` binarises the group modes' maps (0.5, or "adaptive"); with ``save_maps``
  their maps are written under ``<save_maps>/<method>/<dataset>/`` and scored with the
  co-saliency metrics (``sod_metrics``), reported under each mode's "sod".
  """
  threshold = parse_threshold(threshold)
  found = resolve(workdir, checkpoint)
  if found.released and config is None:
    raise ValueError(f"{found.path} is a released checkpoint without a run config: give the "
                     "experiment config with --config (e.g. configs/reference_ca.py)")
  config, model, variables, read = load_checkpoint(found, config, warn=log)
  config_lib.validate(config, training=False)
  data_config = config.data
  modes = resolve_modes(pipeline.dataset_kind(data_config), modes)
  check_groups(data_config, modes)
  writer = map_writer(save_maps, method, data_config, modes)
  report = {"dataset": dataset_name(data_config), "split": split, "checkpoint": str(read),
            "step": int(read.name) if read.name.isdigit() else None,
            "run_dir": str(found.run_dir), "modes": modes, "threshold": threshold,
            "results": {}, "config": config.to_dict()}
  out = out or default_out_path(report)
  check_writable(out)

  def finished(mode, result):
    if writer is not None and mode in writer.modes:
      result["sod"] = writer.mode_results(mode)
    report["results"][mode] = result
    write_report(report, out)
    log(f"{mode}: done, written to {out}")
  pair_modes = [m for m in modes if m in PAIR_MODES]
  if pair_modes:
    evaluate_pairs(config, model, variables, split, pair_modes, finished)
  segmenters = group_segmenters(model, variables, chunk_size)
  group_modes = {m: segmenters[m] for m in modes if m in GROUP_MODES}
  if group_modes:
    evaluate_groups(lambda: pipeline.iterate_groups(data_config, split=split), group_modes,
                    finished, threshold, writer)
  distractor_modes = [m for m in modes if m in DISTRACTOR_MODES]
  if distractor_modes:
    segmenters = distractor_segmenters(model, variables, chunk_size)
    evaluate_distractors(data_config, split, {m: segmenters[m] for m in distractor_modes},
                         finished, threshold)
  report["results"] = {m: report["results"][m] for m in modes}
  write_report(report, out)
  return report


def distractor_segmenters(model, variables, chunk_size=8):
  """{distractor mode: fn(images, pairs) -> P(foreground) of each pair's first image}."""
  single = group_segmenters(model, variables, chunk_size)
  return {"distractor": distractors.model_segmenter(model, variables, chunk_size),
          "distractor" + GATE: distractors.model_segmenter(model, variables, chunk_size, True),
          **{f"distractor_{m}": distractors.image_segmenter(single[m]) for m in BASELINE_MODES}}


def evaluate_distractors(data_config, split, segmenters, on_result=None, threshold=THRESHOLD):
  """{distractor mode: ``distractors.evaluate`` result + "seconds"}; the composites are
  made once (seed ``distractors.SEED``), so every mode and model sees the same ones."""
  groups = list(tqdm.tqdm(pipeline.iterate_groups(data_config, split=split), desc="groups",
                          unit="group", leave=False, dynamic_ncols=True))
  composites = distractors.render(groups, data_config.image_size)
  results = {}
  for mode, segment in segmenters.items():
    start = time.perf_counter()
    results[mode] = {**distractors.evaluate(composites, segment, threshold),
                     "seconds": time.perf_counter() - start}
    if on_result:
      on_result(mode, results[mode])
  return results


def default_out_path(report):
  """``<run_dir>/eval_<dataset>_<split>.json``."""
  return str(pathlib.Path(report["run_dir"]) / f"eval_{report['dataset']}_{report['split']}.json")


def check_writable(path):
  """Raises, before any work, if a report cannot be written to ``path``."""
  path = pathlib.Path(path)
  if path.is_dir():
    raise IsADirectoryError(f"cannot write the report to {path}: it is a folder (give a "
                            ".json file path)")
  try:
    path.parent.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    raise OSError(f"cannot write the report to {path}: {e.strerror or e}") from e
  if not os.access(path.parent, os.W_OK):
    raise PermissionError(f"cannot write the report to {path}: {path.parent} is not writable")


def write_report(report, path):
  """Writes the report as JSON to ``path`` (folders created) and returns the path."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  with open(path, "w") as f:
    json.dump(report, f, indent=2, default=str)
  return str(path)


def _text_table(header, rows):
  """Right-aligned columns; the first column left-aligned."""
  cells = [header] + rows
  widths = [max(len(str(row[i])) for row in cells) for i in range(len(header))]
  return "\n".join("  ".join(str(v).ljust(w) if i == 0 else str(v).rjust(w)
                             for i, (v, w) in enumerate(zip(row, widths))) for row in cells)


def _percent(value):
  return f"{100 * value:.2f}"


SOD_COLUMNS = ("s_measure", "e_max", "e_mean", "e_adaptive", "f_max", "f_mean", "f_adaptive",
               "mae")


def sod_table(results, modes):
  """Text lines of the co-saliency metrics of ``modes`` that have them ([] if none)."""
  scored = [m for m in modes if "sod" in results[m]]
  if not scored:
    return []
  rows = [[m] + [f"{results[m]['sod'][c]:.4f}" for c in SOD_COLUMNS] for m in scored]
  return ["", "Co-saliency metrics of the saved 8-bit maps (sod_metrics, per image then "
          "over all images):", _text_table(["mode", *SOD_COLUMNS], rows)]


def format_report(report):
  """The report as text: a pair-mode table and per-class Jaccard / precision tables."""
  results = report["results"]
  lines = [f"{report['dataset']} ({report['split']} split), checkpoint step {report['step']}: "
           f"{report['checkpoint']}"]
  pair_modes = [m for m in report["modes"] if m in PAIR_MODES]
  if pair_modes:
    rows = [[m, _percent(results[m]["jaccard"]), _percent(results[m]["precision"]),
             _percent(results[m]["mean_image_jaccard"]), results[m]["images"],
             f"{results[m]['seconds']:.1f}"] for m in pair_modes]
    lines += ["", "Pairs at the model's input size (pooled over all images):", _text_table(
        ["mode", "Jaccard", "precision", "mean image Jaccard", "images", "seconds"], rows)]
  group_modes = [m for m in report["modes"] if m in GROUP_MODES]
  if group_modes:
    classes = list(results[group_modes[0]]["classes"])
    for key, title in (("jaccard", "Jaccard"), ("precision", "Precision")):
      rows = [[c] + [_percent(results[m]["classes"][c][key]) for m in group_modes]
              for c in classes]
      rows.append(["Average"] + [_percent(results[m]["average"][key]) for m in group_modes])
      lines += ["", f"{title} (%) at the original resolution, threshold "
                f"{report.get('threshold', THRESHOLD)}, per image then per class:",
                _text_table(["class"] + group_modes, rows)]
    lines += ["", _text_table(["", *group_modes], [["seconds"] + [
        f"{results[m]['seconds']:.1f}" for m in group_modes]])]
    lines += sod_table(results, group_modes)
  lines += distractor_table(report)
  return "\n".join(lines)


def distractor_table(report):
  """Text lines of the distractor modes ([] if none ran): per class of the composites' own
  objects, the Jaccard of each target, their mean and the partner effect."""
  modes = [m for m in report["modes"] if m in DISTRACTOR_MODES]
  if not modes:
    return []
  results = report["results"]
  columns = [(m, t) for m in modes for t in (*distractors.TARGETS, "mean", "effect")]

  def cell(m, t, c):  # c: a class, or None for the average over classes
    if t == "effect":
      effect = results[m]["partner_effect"]
      return effect["average"] if c is None else effect["classes"][c]
    if t == "mean":
      return np.mean([cell(m, u, c) for u in distractors.TARGETS])
    table = results[m][t]
    return table["average"]["jaccard"] if c is None else table["classes"][c]["jaccard"]
  classes = list(results[modes[0]]["own"]["classes"])
  rows = [[c or "Average", *[_percent(cell(m, t, c)) for m, t in columns]]
          for c in (*classes, None)]
  header = ["class", *[f"{'model' if m == 'distractor' else m.removeprefix('distractor_')} {t}"
                       for m, t in columns]]
  return ["", f"Distractor test at S x S, threshold {report.get('threshold')}: each image "
          "with another class's object pasted in; target = what its partner shows "
          f"({results[modes[0]]['images']} composites). Jaccard (%) of each target and their "
          "mean (<= 50 for a model blind to the partner), and the partner effect (%: 0 when "
          "blind, 100 for a perfect co-segmenter):", _text_table(header, rows)]
