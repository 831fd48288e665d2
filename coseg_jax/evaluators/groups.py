"""The group protocol: every image of every group co-segmented with its group (pairwise,
Algorithm 1) or by a baseline, scored at its ORIGINAL resolution.

The S x S probability map is resized back to the image's H x W (bilinear), binarised
(``coseg_jax.maps``: 0.5, "adaptive" or "otsu") and compared with the full-size ground-truth
mask. Per-image Jaccard and precision are averaged within each group (class), then over
the groups (the tables' "Average" row).
"""

import functools
import time

import numpy as np
import tqdm

from coseg_jax import group, maps, metrics
from coseg_jax.constants import THRESHOLD
from coseg_jax.data import folders
from coseg_jax.errors import BadValue

NO_MASKS = "segment it with `coseg-segment` instead"


def center_box(inputs):
  """P(foreground) [N, S, S]: 1 on the middle half of each side (rows and columns
  [S/4, 3S/4)), 0 elsewhere; at the original size it is the same box of the image."""
  n, height, width = inputs.shape[:3]
  probs = np.zeros((n, height, width), np.float32)
  probs[:, height // 4:height - height // 4, width // 4:width - width // 4] = 1
  return probs


def all_foreground(inputs):
  return np.ones(inputs.shape[:3], np.float32)


def mode_gate(mode, gate):
  """The gate of ``mode``: ``gate`` (a recipe's, ``config.recipe_gate``) if it is gated."""
  if mode.gate and gate is None:
    raise BadValue(f"mode {mode.name} is gated, and the config's recipe (config.recipe) "
                   "offers no gate: use a recipe's config, e.g. configs/cpu_frozen.py")
  return gate if mode.gate else None


def segmenter(mode, model, variables, chunk_size=8, gate=None):
  """fn(inputs [N, S, S, 3]) -> P(foreground) float32 [N, S, S] of a group ``mode``'s
  segmenter; ``gate`` is used by a gated mode."""
  gate = mode_gate(mode, gate)
  if mode.segmenter == "pairwise":
    return lambda x: group.segment_pairwise(model, variables, x, chunk_size, encode_once=True,
                                            gate=gate)
  if mode.segmenter in ("group_mean", "group_min"):
    reduce = mode.segmenter.removeprefix("group_")
    return lambda x: group.segment_group(model, variables, x, reduce, chunk_size, gate=gate)
  return {"center_box": center_box, "all_foreground": all_foreground}[mode.segmenter]


def original_size_counts(probs, masks, threshold=THRESHOLD):
  """Metric counts of S x S probabilities [N, S, S] against N full-size bool masks, each
  map resized to its mask's size and binarised there (``maps.binarize``)."""
  return mask_counts([maps.binarize(maps.to_original_size(p, m.shape), threshold)
                      for p, m in zip(probs, masks)], masks)


def mask_counts(found, masks):
  """Metric counts of bool masks against the ground-truth masks of the same sizes."""
  return metrics.concat([metrics.counts(f[None], m[None].astype(np.uint8))
                         for f, m in zip(found, masks)])


def evaluate(groups, segmenters, on_result=None, threshold=THRESHOLD, map_writer=None,
             refine=None):
  """Per-class table of every mode over ``groups`` (dicts of ``pipeline.iterate_groups``).

  ``groups``: a function returning a fresh iterator of the groups (read once per mode, so
  that each mode finishes before the next starts), or an iterable of them.
  ``segmenters``: {mode name: fn(inputs) -> probs}. ``on_result(mode, result)`` is called
  as each mode finishes. ``map_writer(mode, group, maps)``, if given, receives each
  group's maps at the original size (``evaluators.saliency.MapWriter``). ``refine``
  (``maps.refiner``), if given, refines each map at the original size with its image,
  before it is binarised and written (``maps.decide``).
  Returns {mode: {"classes": {group: {"jaccard", "precision", "images"}}, "average":
  {"jaccard", "precision"}, "seconds": wall time of the mode's segmentation}}.
  """
  if not callable(groups):
    groups = functools.partial(iter, list(groups))
  results = {}
  for mode, segment in segmenters.items():
    results[mode] = _evaluate_mode(groups(), mode, segment, threshold, map_writer, refine)
    if on_result:
      on_result(mode, results[mode])
  return results


def _evaluate_mode(groups, mode, segment, threshold=THRESHOLD, map_writer=None, refine=None):
  counts, names, seconds = [], [], 0.0
  for g in tqdm.tqdm(groups, desc=mode, unit="group", leave=False, dynamic_ncols=True):
    if g["masks"] is None:
      raise BadValue(f"group {g['name']} has no masks, so it cannot be scored ({NO_MASKS})")
    names += [g["name"]] * len(g["masks"])
    start = time.perf_counter()
    try:
      probs = segment(g["inputs"])
    except BadValue as e:  # a wrong input of the group's, named; anything else is a bug
      raise BadValue(f"mode {mode}, group {g['name']}: {e}") from e
    seconds += time.perf_counter() - start
    pictures = g["images"] if refine is not None else [None] * len(probs)
    full, found = zip(*(maps.decide(maps.to_original_size(p, m.shape), image, threshold, refine)
                        for p, m, image in zip(probs, g["masks"], pictures)))
    counts.append(mask_counts(found, g["masks"]))
    if map_writer is not None:
      map_writer(mode, g, full)
  if not names:
    raise BadValue("no groups to evaluate")
  table = metrics.group_means(metrics.concat(counts), names)
  return {"classes": table, "average": metrics.class_average(table), "seconds": seconds}


def check(data_config, modes):
  """Raises, before any work, if the groups cannot be scored in ``modes`` (no masks, a
  group of one image for ``pairwise``, one group for the distractor test), naming the
  groups; reads no pixels."""
  names = {m.segmenter for m in modes if m.protocol != "pairs"}
  distractor = any(m.protocol == "distractor" for m in modes)
  if not names:
    return
  if data_config.dataset == "synthetic":
    if "pairwise" in names and data_config.synthetic.group_size < 2:
      raise BadValue(f"mode pairwise needs at least 2 images per group; config.data."
                     f"synthetic.group_size = {data_config.synthetic.group_size}")
    return
  if data_config.dataset != "folder":  # a TFDS dataset was checked when it was built
    return
  dataset = folders.scan(data_config.root, layout=data_config.folder.layout,
                         groups=data_config.groups or None,
                         on_mismatch=data_config.folder.on_mismatch)
  unscored = [g.name for g in dataset.groups if g.masks is None]
  if unscored:
    raise BadValue(f"groups {unscored} of {data_config.root} have no masks, so they cannot "
                   f"be scored ({NO_MASKS})")
  if distractor and len(dataset.groups) < 2:
    raise BadValue(f"the distractor modes need at least two groups; {data_config.root} "
                   f"has {len(dataset.groups)} (choose them with --config.data.groups)")
  single = [g.name for g in dataset.groups if len(g.images) < 2]
  if "pairwise" in names and single:
    raise BadValue(f"mode pairwise needs at least 2 images per group; groups {single} of "
                   f"{data_config.root} have one (leave pairwise out of "
                   "--config.eval.modes, or choose groups with --config.data.groups)")
