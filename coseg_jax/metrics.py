"""The paper's metrics (§4.3): precision and Jaccard.

* Precision ("P" in the co-segmentation literature) is pixel accuracy over foreground
  and background together: correct pixels / counted pixels.
* Jaccard is the foreground intersection over union.

Pixels labelled 255 (VOC's void border) are not counted by either. Two ways to average:

* per image, then per group/class, then over classes: iCoseg / MSRC / Internet /
  PASCAL-VOC10 co-seg (Tables 1–5): ``group_means`` / ``class_average``;
* pooled over a whole set: the sums of intersections and unions of all images, the
  single VOC-pairs number (59.24 / 59.41 / 59.76 in §4.3): ``pooled``.

An image whose prediction and ground truth are both empty has Jaccard 1.
"""

import numpy as np

from coseg_jax.constants import IGNORE
from coseg_jax.errors import BadValue

COUNTS = ("intersection", "union", "correct", "counted")


def counts(predicted, target, xp=np):
  """Per-image counts of [N, H, W] bool predictions against [N, H, W] {0, 1, 255} targets.

  Returns a dict of integer [N] arrays: intersection, union, correct, counted. With
  ``xp=jax.numpy`` the same counts run inside ``jit`` (the train and eval steps).
  """
  predicted = xp.asarray(predicted).astype(bool)
  target = xp.asarray(target)
  if predicted.shape != target.shape:
    raise BadValue(f"prediction shape {predicted.shape} != ground-truth shape {target.shape}")
  valid = target != IGNORE
  truth = (target == 1) & valid
  predicted = predicted & valid
  axes = tuple(range(1, predicted.ndim))
  return {
      "intersection": xp.sum(predicted & truth, axis=axes),
      "union": xp.sum(predicted | truth, axis=axes),
      "correct": xp.sum((predicted == truth) & valid, axis=axes),
      "counted": xp.sum(valid, axis=axes),
  }


def per_image(c):
  """Precision and Jaccard of every image from ``counts`` -> dict of float [N] arrays."""
  union = c["union"]
  jaccard = np.where(union > 0, c["intersection"] / np.maximum(union, 1), 1.0)
  precision = c["correct"] / np.maximum(c["counted"], 1)
  return {"precision": precision, "jaccard": jaccard}


def pooled(c):
  """Precision and Jaccard pooled over all images (sums of counts; the VOC-pairs number)."""
  union = int(np.sum(c["union"]))
  return {
      "precision": float(np.sum(c["correct"]) / max(int(np.sum(c["counted"])), 1)),
      "jaccard": float(np.sum(c["intersection"]) / union) if union else 1.0,
  }


def concat(counts_list):
  """Joins a list of ``counts`` dicts along the image axis."""
  return {k: np.concatenate([c[k] for c in counts_list]) for k in COUNTS}


def group_means(c, groups):
  """Per-image metrics averaged within each group -> {group: {"precision", "jaccard", "images"}}."""
  metrics = per_image(c)
  groups = np.asarray(groups)
  return {
      str(g): {"precision": float(metrics["precision"][groups == g].mean()),
               "jaccard": float(metrics["jaccard"][groups == g].mean()),
               "images": int(np.sum(groups == g))}
      for g in dict.fromkeys(groups.tolist())
  }


def class_average(table):
  """The average over classes of a ``group_means`` table (the tables' "Average" row)."""
  return {k: float(np.mean([row[k] for row in table.values()])) for k in ("precision", "jaccard")}
