"""Foreground probability maps -> masks: resizing to the image and binarising.

The group API (``coseg_jax.segment_group``, ``segment_pairwise``) returns probabilities at
the model's S x S input; evaluation and ``segment`` bring each map back to its image's
H x W (``to_original_size``, bilinear) and binarise it there (``binarize``):

* a number t in (0, 1): foreground where P(foreground) > t (0.5, ``THRESHOLD``, by
  default);
* ``"adaptive"``: each map's mean plus its standard deviation, at most 0.8 (the
  co-segmentation protocol of SSNM and UFO, ``tools.generate_binary_map(pred,
  'mean+std')``); better on objects of classes the model never saw, which it ranks right
  but scores below 0.5 (docs/results.md).

``parse_threshold`` is the one check of a threshold value, used by every entry point.
"""

import numpy as np
from PIL import Image

from coseg_jax.constants import THRESHOLD

ADAPTIVE = "adaptive"
ADAPTIVE_CAP = 0.8  # the cap of the mean + std threshold (SSNM; UFO's tools.py takes it as th)


def parse_threshold(value, name="threshold"):
  """"adaptive" or a number in (0, 1), given as text or a number -> "adaptive" or float.

  Anything else raises a ``ValueError`` naming ``name`` (the flag or config key) and the
  value.
  """
  if value == ADAPTIVE:
    return value
  try:
    threshold = float(value)
  except (TypeError, ValueError):
    threshold = None
  if threshold is None or not 0 < threshold < 1:
    raise ValueError(f"{name}={value!r}: expected {ADAPTIVE!r} or a number in (0, 1)")
  return threshold


def is_threshold(value):
  """True for a value ``parse_threshold`` takes."""
  try:
    parse_threshold(value)
  except ValueError:
    return False
  return True


def adaptive_threshold(probs, cap=ADAPTIVE_CAP):
  """min(mean + std, cap) of a probability map (population std, as ``np.std``)."""
  probs = np.asarray(probs, np.float64)
  return min(float(probs.mean() + probs.std()), cap)


def binarize(probs, threshold=THRESHOLD):
  """bool masks: foreground where ``probs`` exceeds ``threshold`` (a number, or "adaptive":
  ``adaptive_threshold`` of each map, the last two axes being one map)."""
  probs = np.asarray(probs)
  threshold = parse_threshold(threshold)
  if threshold != ADAPTIVE:
    return probs > threshold
  if probs.ndim == 2:
    return probs > adaptive_threshold(probs)
  return np.stack([binarize(p, threshold) for p in probs])


def to_original_size(probs, size):
  """float [h, w] map -> float32 [H, W] = ``size``, bilinear (PIL)."""
  probs = np.asarray(probs, np.float32)
  height, width = size
  if probs.shape == (height, width):
    return probs
  return np.asarray(Image.fromarray(probs).resize((width, height), Image.Resampling.BILINEAR))
