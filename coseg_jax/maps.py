"""Foreground probability maps -> masks: resizing to the image and binarising.

The group API (``coseg_jax.segment_group``, ``segment_pairwise``) returns probabilities at
the model's S x S input; evaluation and ``segment`` bring each map back to its image's
H x W (``to_original_size``, bilinear) and binarise it there (``binarize``):

* a number t in (0, 1): foreground where P(foreground) > t (0.5, ``THRESHOLD``, by
  default);
* ``"adaptive"``: each map's mean plus its standard deviation, at most 0.8 (the
  co-segmentation protocol of SSNM and UFO, ``tools.generate_binary_map(pred,
  'mean+std')``); better on objects of classes the model never saw, which it ranks right
  but scores below 0.5 (docs/results.md);
* ``"otsu"``: each map's Otsu threshold (``otsu_threshold``), which splits a map into
  its two modes whatever share of the photo the object fills.

``parse_threshold`` is the one check of a threshold value, used by every entry point.
"""

import numpy as np
from PIL import Image

from coseg_jax.constants import THRESHOLD
from coseg_jax.errors import BadValue, MissingExtra

ADAPTIVE = "adaptive"
ADAPTIVE_CAP = 0.8  # the cap of the mean + std threshold (SSNM; UFO's tools.py takes it as th)
OTSU = "otsu"
OTSU_BINS = 256  # the histogram's bins over [0, 1] (as skimage.filters.threshold_otsu)


def parse_threshold(value, name="threshold"):
  """"adaptive", "otsu" or a number in (0, 1), given as text or a number -> that name or a
  float.

  Anything else raises a ``ValueError`` naming ``name`` (the flag or config key) and the
  value.
  """
  if value in PER_MAP:
    return value
  try:
    threshold = float(value)
  except (TypeError, ValueError):
    threshold = None
  if threshold is None or not 0 < threshold < 1:
    raise BadValue(f"{name}={value!r}: expected {ADAPTIVE!r}, {OTSU!r} or a number in (0, 1)")
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


def otsu_threshold(probs, bins=OTSU_BINS):
  """Otsu's threshold (1979) of a probability map: of the ``bins`` equal bins over [0, 1],
  the upper edge of the one that maximises the between-class variance of the values up
  to it and above it, so that ``probs > t`` splits the map there.

  Written here (a histogram and two cumulative sums) rather than taken from
  scikit-image, which the project does not otherwise need. A map with nothing to split
  (one value, as the all-foreground baseline's) is binarised at 0.5 (``THRESHOLD``).
  """
  counts, edges = np.histogram(np.asarray(probs, np.float64), bins=bins, range=(0, 1))
  centres = (edges[:-1] + edges[1:]) / 2
  below = np.cumsum(counts)
  above = below[-1] - below
  mass = np.cumsum(counts * centres)
  mean_below = mass / np.maximum(below, 1)
  mean_above = (mass[-1] - mass) / np.maximum(above, 1)
  between = below * above * (mean_below - mean_above) ** 2
  if not between.any():
    return THRESHOLD
  return float(edges[1:][np.argmax(between)])


PER_MAP = {ADAPTIVE: adaptive_threshold, OTSU: otsu_threshold}  # computed from each map


def map_threshold(probs, threshold=THRESHOLD):
  """The number that binarises one map [H, W]: ``threshold`` itself, or the map's own
  for "adaptive" and "otsu"."""
  threshold = parse_threshold(threshold)
  return PER_MAP[threshold](probs) if threshold in PER_MAP else threshold


def binarize(probs, threshold=THRESHOLD):
  """bool masks: foreground where ``probs`` exceeds ``threshold`` (a number, or "adaptive"
  / "otsu": ``map_threshold`` of each map, the last two axes being one map)."""
  probs = np.asarray(probs)
  threshold = parse_threshold(threshold)
  if threshold not in PER_MAP:
    return probs > threshold
  if probs.ndim == 2:
    return probs > map_threshold(probs, threshold)
  return np.stack([binarize(p, threshold) for p in probs])


def to_original_size(probs, size):
  """float [h, w] map -> float32 [H, W] = ``size``, bilinear (PIL)."""
  probs = np.asarray(probs, np.float32)
  height, width = size
  if probs.shape == (height, width):
    return probs
  return np.asarray(Image.fromarray(probs).resize((width, height), Image.Resampling.BILINEAR))


# ----------------------------------------------------------------------------- refinement
REFINERS = ("", "guided", "crf")
GUIDED_RADIUS = 0.03  # of the longer side (chosen on a run's training classes, bench/refine_sweep.py)
GUIDED_EPS = 0.001  # the filter's regulariser, for a grey guide in [0, 1] (chosen likewise)
CRF_SXY = 0.1  # the CRF's appearance kernel: spatial width, of the longer side (chosen likewise)
CRF_SRGB = 13.0  # its colour width, in 0..255 levels per channel (chosen likewise)
CRF_COMPAT = 5.0  # its weight (chosen likewise)
CRF_SMOOTH = (3.0, 3.0)  # the smoothness kernel: width in pixels, weight (pydensecrf's example)
CRF_STEPS = 5  # mean-field iterations
CRF_INSTALL = "pip install 'coseg_jax[crf]' (pydensecrf2)"


def refiner(name, radius=GUIDED_RADIUS, eps=GUIDED_EPS, sxy=CRF_SXY, srgb=CRF_SRGB,
            compat=CRF_COMPAT):
  """fn(map [H, W], image uint8 [H, W, 3], threshold) -> (refined map, the threshold that
  binarises it), or None for ``name`` "".

  "guided": ``guided_filter`` with the image as guide, its window ``radius`` times the
  map's longer side; the map's edges move to the image's edges within the window, and the
  threshold stays. "crf": ``dense_crf``, split where the threshold splits the map (each
  map's own for "adaptive" and "otsu"); its output, P(foreground) after the CRF, is
  binarised at 0.5.
  """
  if name not in REFINERS:
    raise BadValue(f"refine={name!r}: expected one of {REFINERS}")
  if not name:
    return None
  if name == "guided":
    return lambda probs, image, threshold: (guided_filter(probs, image, radius, eps), threshold)
  _densecrf()  # a missing package is named now, before any work

  def crf(probs, image, threshold):
    return dense_crf(probs, image, map_threshold(probs, threshold), sxy, srgb, compat), THRESHOLD
  return crf


def configured_refiner(settings, name=None):
  """``refiner`` of a run's ``config.eval`` settings (refine, refine_radius, refine_eps,
  crf_sxy, crf_srgb, crf_compat); ``name``, if given, in place of its ``refine``."""
  return refiner(settings.refine if name is None else name, settings.refine_radius,
                 settings.refine_eps, settings.crf_sxy, settings.crf_srgb, settings.crf_compat)


def decide(probs, image, threshold=THRESHOLD, refine=None):
  """(map, bool mask) of a full-size map: refined with its image by ``refine`` (a
  ``refiner``), if given, then binarised (``binarize``)."""
  threshold = parse_threshold(threshold)
  if refine is not None:
    probs, threshold = refine(probs, image, threshold)
  return probs, binarize(probs, threshold)


def _densecrf():
  try:
    import pydensecrf.densecrf as densecrf  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise MissingExtra(f"refine='crf' needs pydensecrf2, which is not installed: "
                       f"{CRF_INSTALL}") from None
  return densecrf


def dense_crf(probs, image, split=THRESHOLD, sxy=CRF_SXY, srgb=CRF_SRGB, compat=CRF_COMPAT):
  """The fully connected two-label CRF (Krähenbühl & Koltun, NIPS 2011) of a probability
  map with its image -> P(foreground) float32 [H, W] after 5 mean-field steps.

  Unary: -log of the map re-centred on ``split``, P' = σ(logit P - logit split), so that
  alone it decides as the threshold does (P > split). Pairwise, Potts: a smoothness
  kernel (``CRF_SMOOTH``) and an appearance kernel, Gaussian in position (width ``sxy``
  times the longer side) and colour (``srgb``), of weight ``compat``: a pixel joins the
  label of the pixels near it and of its colour, so the mask's edges move to the image's.
  The image is resized to the map if their sizes differ. Runs on the CPU (pydensecrf2).
  """
  densecrf = _densecrf()
  height, width = probs.shape
  image = np.asarray(image, np.uint8)
  if image.shape[:2] != probs.shape:
    image = np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR))
  logit = lambda p: np.log(p) - np.log1p(-p)
  centred = logit(np.clip(np.asarray(probs, np.float64), 1e-6, 1 - 1e-6)) - logit(
      np.clip(split, 1e-6, 1 - 1e-6))
  foreground = np.clip(1 / (1 + np.exp(-centred)), 1e-6, 1 - 1e-6)
  unary = -np.log(np.stack([1 - foreground, foreground]).reshape(2, -1))
  crf = densecrf.DenseCRF2D(width, height, 2)
  crf.setUnaryEnergy(np.ascontiguousarray(unary, np.float32))
  crf.addPairwiseGaussian(sxy=CRF_SMOOTH[0], compat=CRF_SMOOTH[1])
  rgb = np.array(image[..., :3], order="C")  # a copy: pydensecrf takes writable buffers only
  crf.addPairwiseBilateral(sxy=sxy * max(height, width), srgb=srgb, rgbim=rgb, compat=compat)
  return np.asarray(crf.inference(CRF_STEPS), np.float32)[1].reshape(height, width)


def guided_filter(probs, image, radius=GUIDED_RADIUS, eps=GUIDED_EPS):
  """The guided filter (He, Sun, Tang, ECCV 2010) of a probability map with a grey guide.

  Within every window of side 2r + 1, r = round(``radius`` * max(H, W)), the output is a
  linear function a * I + b of the guide I (the image, grey, in [0, 1], resized to the
  map if needed) fitted to the map by least squares with ridge ``eps``; a and b are
  averaged over the windows covering each pixel. Where the image is flat it smooths the
  map; across the image's edges it keeps them. Written with numpy box sums: every photo
  has its own size, which a jitted version would compile anew for.
  """
  probs = np.asarray(probs, np.float64)
  guide = np.asarray(Image.fromarray(np.asarray(image, np.uint8)).convert("L"), np.float64)
  if guide.shape != probs.shape:
    guide = to_original_size(guide.astype(np.float32), probs.shape).astype(np.float64)
  guide /= 255.0
  r = max(1, round(radius * max(probs.shape)))
  mean_i, mean_p = box_mean(guide, r), box_mean(probs, r)
  cov_ip = box_mean(guide * probs, r) - mean_i * mean_p
  var_i = box_mean(guide * guide, r) - mean_i * mean_i
  a = cov_ip / (var_i + eps)
  b = mean_p - a * mean_i
  refined = box_mean(a, r) * guide + box_mean(b, r)
  return np.clip(refined, 0, 1).astype(np.float32)


def box_mean(x, r):
  """The mean of x over the (2r + 1)^2 window around each pixel, clipped at the borders."""
  total = np.pad(x, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
  height, width = x.shape
  top = np.clip(np.arange(height) - r, 0, height)
  bottom = np.clip(np.arange(height) + r + 1, 0, height)
  left = np.clip(np.arange(width) - r, 0, width)
  right = np.clip(np.arange(width) + r + 1, 0, width)
  sums = (total[bottom][:, right] - total[top][:, right] - total[bottom][:, left]
          + total[top][:, left])
  counts = np.outer(bottom - top, right - left)
  return sums / counts
