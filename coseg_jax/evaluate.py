"""Evaluation of a trained CoSegNet: the paper's tables (§4.3–4.4) from a checkpoint.

Modes (``MODES``):

* ``pairs``: the pair model over the pairs of a split (VOC 2012 val/test, the synthetic
  pairs, or every pair within each group of a folder dataset), scored at the model's
  input size S x S (masks resized nearest, as in training): the pooled Jaccard (the
  single VOC number of §4.3), the pooled precision and the mean per-image Jaccard,
  counted by ``train_lib.evaluate``.
* ``pairs_all_foreground``: the same pairs, every pixel predicted foreground.
* ``pairwise``: every image of a group co-segmented with every other image, its
  foreground probabilities averaged over its N-1 pairs (Tables 1–3 and 5;
  ``group.segment_pairwise``).
* ``group_mean`` / ``group_min``: instant group co-segmentation (Algorithm 1) with the
  Group Average / Group Minimum Attention (Tables 4–5, Fig. 5; ``group.segment_group``).
* ``all_foreground``: every pixel of every group image foreground (a trivial baseline).
* ``center_box``: the middle half of each side of every group image foreground (a fixed
  box, the baseline that a co-segmentation model must beat to show it finds objects).

The group modes score every image at its ORIGINAL resolution: the S x S probability map
is resized back to the image's H x W (bilinear), thresholded at 0.5 and compared with the
full-size ground-truth mask. Per-image Jaccard and precision are averaged within each
group (class), then over the groups (the tables' "Average" row).
"""

import dataclasses
import json
import os
import pathlib
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from PIL import Image

from coseg_jax import group, metrics, models, train_lib, weights
from coseg_jax.constants import STRIDE, THRESHOLD
from coseg_jax.data import pipeline

PAIR_MODES = ("pairs", "pairs_all_foreground")
BASELINE_MODES = ("all_foreground", "center_box")
GROUP_MODES = ("pairwise", "group_mean", "group_min") + BASELINE_MODES
MODES = PAIR_MODES + GROUP_MODES
DEFAULT_MODES = {"voc": PAIR_MODES, "synthetic": MODES, "folder": GROUP_MODES}
RELEASED_IMAGE_SIZE = 512  # the released reference checkpoints were trained at 512x512


# ----------------------------------------------------------------------------- loading
@dataclasses.dataclass(frozen=True)
class Checkpoint:
  """One checkpoint step folder written by training, and the run folder it belongs to."""
  path: pathlib.Path  # .../checkpoints/<step> or .../best/<step>
  step: int
  run_dir: pathlib.Path  # the training workdir, holding config.json


def _is_step(path):
  return path.name.isdigit() and (path / "state").is_dir()


def find_checkpoint(workdir=None, checkpoint=None):
  """The checkpoint to evaluate -> ``Checkpoint``.

  Args:
    workdir: a training workdir; alone, its latest checkpoint in ``checkpoints/`` is used.
    checkpoint: a step folder (``.../checkpoints/<step>``, ``.../best/<step>``), a
      ``checkpoints``/``best`` folder (its latest step) or a workdir. Its run folder (for
      config.json) is two levels above a step folder, one above a checkpoints folder,
      or ``workdir`` when that is given too.
  """
  if workdir is None and checkpoint is None:
    raise ValueError("give a workdir or a checkpoint to evaluate")
  path = pathlib.Path(checkpoint or workdir).expanduser().absolute()
  if not path.is_dir():
    raise FileNotFoundError(f"checkpoint not found: {path} is not a folder")
  if _is_step(path):
    folder, run_dir = path.parent, path.parent.parent
  elif (path / "checkpoints").is_dir():
    folder, run_dir = path / "checkpoints", path
  else:
    folder, run_dir = path, path.parent
  steps = sorted((p for p in folder.iterdir() if _is_step(p)), key=lambda p: int(p.name))
  if not steps:
    raise FileNotFoundError(f"no checkpoint in {path}: expected step folders such as "
                            f"{folder}/1000 (written by train.py)")
  chosen = path if _is_step(path) else steps[-1]
  run_dir = pathlib.Path(workdir).expanduser().absolute() if workdir else run_dir
  return Checkpoint(chosen, int(chosen.name), run_dir)


def read_config(run_dir):
  """The training config saved as ``<run_dir>/config.json`` -> ``ml_collections.ConfigDict``."""
  path = pathlib.Path(run_dir) / "config.json"
  if not path.is_file():
    raise FileNotFoundError(f"run config not found: {path} (train.py writes it; or pass the "
                            "experiment config with --config configs/X.py)")
  with open(path) as f:
    saved = json.load(f)
  if "config" not in saved:
    raise ValueError(f"{path} has no 'config' key (keys: {sorted(saved)}); is it a coseg_jax "
                     "run config?")
  return ml_collections.ConfigDict(saved["config"])


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


def load_run(workdir=None, checkpoint=None, config=None):
  """(config, model, variables) of a trained run, or of a released checkpoint file.

  ``config`` (e.g. from ``--config``) wins; without it the run's config.json is read.
  ``workdir`` and ``checkpoint`` are as in ``find_checkpoint``; a ``checkpoint`` that is a
  file (.pkl/.pth/.npz) is a released reference checkpoint. A missing checkpoint or
  config.json raises ``FileNotFoundError`` naming the path.
  """
  if checkpoint is not None and os.path.isfile(checkpoint):
    return released_run(checkpoint, config)
  found = find_checkpoint(workdir, checkpoint)
  config = read_config(found.run_dir) if config is None else config
  model = models.build(config.model)
  variables = train_lib.load_variables(str(found.path))
  check_variables(model, variables, str(found.path))
  return config, model, variables


# ----------------------------------------------------------------------------- metrics
def to_original_size(probs, size):
  """float [h, w] map -> float32 [H, W] = ``size``, bilinear (PIL)."""
  probs = np.asarray(probs, np.float32)
  height, width = size
  if probs.shape == (height, width):
    return probs
  return np.asarray(Image.fromarray(probs).resize((width, height), Image.Resampling.BILINEAR))


def original_size_counts(probs, masks):
  """Metric counts of S x S probabilities [N, S, S] against N full-size bool masks.

  Each map is resized to its mask's size (bilinear) and thresholded at 0.5.
  """
  return metrics.concat([
      metrics.counts(to_original_size(p, m.shape)[None] > THRESHOLD, m[None].astype(np.uint8))
      for p, m in zip(probs, masks)])


def group_segmenters(model, variables, chunk_size=8):
  """{group mode: fn(inputs float32 [N, S, S, 3]) -> P(foreground) float32 [N, S, S]}."""
  def instant(reduce):
    return lambda x: group.segment_group(model, variables, x, reduce, chunk_size,
                                         return_probs=True)[1]
  return {
      "pairwise": lambda x: group.segment_pairwise(model, variables, x, chunk_size,
                                                   return_probs=True, encode_once=True)[1],
      "group_mean": instant("mean"),
      "group_min": instant("min"),
      "all_foreground": lambda x: np.ones(x.shape[:3], np.float32),
      "center_box": center_box,
  }


def center_box(inputs):
  """P(foreground) [N, S, S]: 1 on the middle half of each side (rows and columns
  [S/4, 3S/4)), 0 elsewhere; at the original size it is the same box of the image."""
  n, height, width = inputs.shape[:3]
  probs = np.zeros((n, height, width), np.float32)
  probs[:, height // 4:height - height // 4, width // 4:width - width // 4] = 1
  return probs


def evaluate_groups(groups, segmenters):
  """Per-class table of every mode over ``groups`` (dicts of ``pipeline.iterate_groups``).

  Returns {mode: {"classes": {group: {"jaccard", "precision", "images"}}, "average":
  {"jaccard", "precision"}, "seconds": wall time of the mode's segmentation}}.
  """
  collected = {mode: [] for mode in segmenters}
  seconds = dict.fromkeys(segmenters, 0.0)
  names = []
  for g in groups:
    if g["masks"] is None:
      raise ValueError(f"group {g['name']} has no masks, so it cannot be scored (segment it "
                       "with `python -m coseg_jax.segment` instead)")
    names += [g["name"]] * len(g["masks"])
    for mode, segment in segmenters.items():
      start = time.perf_counter()
      try:
        probs = segment(g["inputs"])
      except ValueError as e:
        raise ValueError(f"mode {mode}, group {g['name']}: {e}") from e
      seconds[mode] += time.perf_counter() - start
      collected[mode].append(original_size_counts(probs, g["masks"]))
  if not names:
    raise ValueError("no groups to evaluate")
  results = {}
  for mode, counts in collected.items():
    table = metrics.group_means(metrics.concat(counts), names)
    results[mode] = {"classes": table, "average": metrics.class_average(table),
                     "seconds": seconds[mode]}
  return results


def all_foreground_step(variables, batch):
  """``train_lib.eval_step``'s counts [2B] when every pixel is predicted foreground."""
  del variables
  def counts(mask):
    return metrics.counts(jnp.ones(mask.shape, bool), mask, xp=jnp)
  return jax.tree.map(lambda a, b: jnp.concatenate([a, b]), counts(batch["mask_a"]),
                      counts(batch["mask_b"]))


def evaluate_pairs(config, model, variables, split, modes=PAIR_MODES):
  """{pair mode: ``train_lib.evaluate`` result + "seconds"} over the pairs of ``split``."""
  sharding = train_lib.Sharding.create()
  sharding.check_batch_size(config.batch_size)
  _, pair_step = train_lib.compile_steps(model, config, sharding)
  steps = {"pairs": pair_step, "pairs_all_foreground": jax.jit(all_foreground_step)}
  variables = sharding.replicate(variables)
  results = {}
  for mode in modes:
    start = time.perf_counter()
    result = train_lib.evaluate(steps[mode], variables, train_lib.build_data(config, split, 0),
                                sharding)
    results[mode] = {**result, "seconds": time.perf_counter() - start}
  return results


# ----------------------------------------------------------------------------- runs
def resolve_modes(dataset, modes=None):
  """The modes to run on ``dataset`` (its defaults when ``modes`` is empty), checked."""
  modes = list(modes or DEFAULT_MODES[dataset])
  unknown = [m for m in modes if m not in MODES]
  if unknown:
    raise ValueError(f"unknown mode(s) {unknown}; expected some of {list(MODES)}")
  if dataset == "voc" and set(modes) & set(GROUP_MODES):
    raise ValueError(f"modes {[m for m in modes if m in GROUP_MODES]} need groups, which "
                     f"VOC 2012 pairs do not have; use {list(PAIR_MODES)}")
  return modes


def dataset_name(data_config):
  """The dataset's name in reports: a folder dataset's folder name, else the dataset kind."""
  if data_config.dataset == "folder":
    return pathlib.Path(data_config.root).expanduser().absolute().name
  return data_config.dataset


def run(*, config=None, workdir=None, checkpoint=None, modes=None, split="test", chunk_size=8):
  """Evaluates a checkpoint in ``modes`` -> the report (see ``write_report``)."""
  found = find_checkpoint(workdir, checkpoint)
  config, model, variables = load_run(checkpoint=found.path, workdir=found.run_dir,
                                      config=config)
  data_config = pipeline.resolve_config(config.data)
  modes = resolve_modes(data_config.dataset, modes)
  results = {}
  pair_modes = [m for m in modes if m in PAIR_MODES]
  if pair_modes:
    results.update(evaluate_pairs(config, model, variables, split, pair_modes))
  segmenters = group_segmenters(model, variables, chunk_size)
  group_modes = {m: segmenters[m] for m in modes if m in GROUP_MODES}
  if group_modes:
    results.update(evaluate_groups(pipeline.iterate_groups(data_config, split=split),
                                   group_modes))
  return {"dataset": dataset_name(data_config), "split": split, "checkpoint": str(found.path),
          "step": found.step, "run_dir": str(found.run_dir), "modes": modes,
          "results": {m: results[m] for m in modes}, "config": config.to_dict()}


def default_out_path(report):
  """``<run_dir>/eval_<dataset>_<split>.json``."""
  return str(pathlib.Path(report["run_dir"]) / f"eval_{report['dataset']}_{report['split']}.json")


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
      lines += ["", f"{title} (%) at the original resolution, per image then per class:",
                _text_table(["class"] + group_modes, rows)]
    lines += ["", _text_table(["", *group_modes], [["seconds"] + [
        f"{results[m]['seconds']:.1f}" for m in group_modes]])]
  return "\n".join(lines)
