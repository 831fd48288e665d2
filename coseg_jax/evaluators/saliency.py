r"""Co-saliency metrics from soft maps, and the adaptive-threshold Jaccard of co-segmentation.

Co-segmentation is compared with co-saliency detectors (GCoNet+, UFO, DCFM) using
foreground probability maps saved as 8-bit PNGs in the eval-co-sod layout
``pred/<method>/<dataset>/<group>/<image>.png`` and scored with:

* S-measure (structure, Fan et al. ICCV 2017, alpha = 0.5);
* E-measure (enhanced alignment, Fan et al. IJCAI 2018): max and mean over the 256
  thresholds of the 8-bit map, and adaptive (threshold 2 x the map's mean, capped at 1);
* F-measure (beta^2 = 0.3): max and mean over the thresholds, and adaptive;
* MAE, the mean absolute error between the map and the 0/1 mask.

They are computed by ``py_sod_metrics`` (PyPI ``pysodmetrics``, the optional extra
``[sod]``), the library that the co-saliency papers' evaluation code uses, fed exactly
as that code feeds it: the 8-bit map (min-max stretched by the library, as MATLAB's
``mapminmax``) and the mask as 0/255. Each image counts once; scores are means over
the images of a dataset (``SodScores``).

The co-segmentation protocol of SSNM and UFO binarises each map at an adaptive
threshold instead of 0.5: the map's mean plus its standard deviation, capped
(``coseg_jax.maps.adaptive_threshold``), then scores per-image Jaccard and precision
(``coseg_jax.evaluators``, ``threshold="adaptive"``).

  python -m coseg_jax.apps.scores --pred=pred/UFO/iCoseg --gt=/data/iCoseg

scores a folder of maps of any method against a folder dataset's masks.
"""

import pathlib

import numpy as np
from PIL import Image

from coseg_jax import pictures
from coseg_jax.data import folders
from coseg_jax.data import images
from coseg_jax.errors import BadValue, MissingExtra

PNG_MAX = 255
F_BETA_SQUARED = 0.3  # beta^2 of the F-measure, as in every co-saliency paper


def map_path(root, method, dataset, group, file_name):
  """``<root>/<method>/<dataset>/<group>/<stem>.png`` (the eval-co-sod layout)."""
  return pathlib.Path(root) / method / dataset / group / f"{pathlib.Path(file_name).stem}.png"


def _library():
  try:
    import py_sod_metrics  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise MissingExtra("co-saliency metrics need the [sod] extra: pip install "
                       f"'coseg_jax[sod]' (PyPI pysodmetrics): {e}") from e
  return py_sod_metrics


class SodScores:
  """Accumulates S-measure, E-measure, F-measure and MAE over images (py_sod_metrics)."""

  def __init__(self):
    sod = _library()
    fmeasure = sod.FmeasureHandler(with_dynamic=True, with_adaptive=True, beta=F_BETA_SQUARED)
    self._metrics = {"s": sod.Smeasure(), "e": sod.Emeasure(),
                     "f": sod.FmeasureV2(metric_handlers={"fm": fmeasure}), "mae": sod.MAE()}
    self.images = 0

  def add(self, saved_map, mask):
    """One image: ``saved_map`` uint8 [H, W] (as in the PNG), ``mask`` bool [H, W]."""
    saved_map = np.asarray(saved_map)
    if saved_map.dtype != np.uint8 or saved_map.shape != np.shape(mask):
      raise BadValue(f"expected a uint8 map of the mask's shape {np.shape(mask)}, got "
                     f"{saved_map.dtype} {saved_map.shape}")
    gt = np.asarray(mask, bool).astype(np.uint8) * PNG_MAX
    for metric in self._metrics.values():
      metric.step(pred=saved_map, gt=gt)
    self.images += 1

  def results(self):
    """{"s_measure", "e_max", "e_mean", "e_adaptive", "f_max", "f_mean", "f_adaptive",
    "mae", "images"} as plain floats."""
    if not self.images:
      raise BadValue("no images were scored")
    e = self._metrics["e"].get_results()["em"]
    f = self._metrics["f"].get_results()["fm"]
    f = {"curve": f["dynamic"], "adp": f["adaptive"]}
    return {"s_measure": float(self._metrics["s"].get_results()["sm"]),
            "e_max": float(np.max(e["curve"])), "e_mean": float(np.mean(e["curve"])),
            "e_adaptive": float(e["adp"]),
            "f_max": float(np.max(f["curve"])), "f_mean": float(np.mean(f["curve"])),
            "f_adaptive": float(f["adp"]),
            "mae": float(self._metrics["mae"].get_results()["mae"]), "images": self.images}


class MapWriter:
  """Saves each group mode's maps in the eval-co-sod layout and scores them.

  ``writer(mode, group, maps)``: ``group`` a dict of ``pipeline.iterate_groups``, ``maps``
  its float maps at the original size. Maps go to
  ``<root>/<method>/<dataset>/<group>/<stem>.png``; with several modes the method
  folder is ``<method>_<mode>``.
  """

  def __init__(self, root, method, dataset, modes):
    self.root, self.method, self.dataset, self.modes = root, method, dataset, list(modes)
    self.scores = {mode: SodScores() for mode in self.modes}

  def method_name(self, mode):
    return self.method if len(self.modes) == 1 else f"{self.method}_{mode}"

  def __call__(self, mode, group, maps):
    for file_name, probs, mask in zip(group["files"], maps, group["masks"]):
      saved = pictures.probability_image(probs)
      path = map_path(self.root, self.method_name(mode), self.dataset, group["name"], file_name)
      path.parent.mkdir(parents=True, exist_ok=True)
      Image.fromarray(saved).save(path)
      self.scores[mode].add(saved, mask)

  def mode_results(self, mode):
    """SodScores.results() of ``mode`` + "maps": the method's folder."""
    return {**self.scores[mode].results(),
            "maps": str(pathlib.Path(self.root) / self.method_name(mode) / self.dataset)}

  def results(self):
    """{mode: ``mode_results(mode)``}."""
    return {mode: self.mode_results(mode) for mode in self.modes}


def read_map(path):
  """A saved map -> uint8 [H, W] (grey; colour maps use their first channel, as cv2 grey)."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise images.MissingDataError(f"{path}: no such prediction map")
  with Image.open(path) as img:
    return np.asarray(img.convert("L"), np.uint8)


def score_folder(pred_dir, gt_root, layout="auto"):
  """Scores the maps ``<pred_dir>/<group>/<stem>.png`` against a folder dataset's masks."""
  scores = SodScores()
  for group in folders.scan(gt_root, layout=layout).groups:
    if group.masks is None:
      raise BadValue(f"{gt_root}: group {group.name} has no masks to score against")
    for image_path, mask_path in zip(group.images, group.masks):
      mask = images.read_image_and_mask(image_path, mask_path)[1]
      saved = read_map(pathlib.Path(pred_dir) / group.name / f"{image_path.stem}.png")
      if saved.shape != mask.shape:
        raise BadValue(f"{pred_dir}/{group.name}/{image_path.stem}.png is {saved.shape} but "
                       f"its mask {mask_path} is {mask.shape}; maps must be at the image's size")
      scores.add(saved, mask)
  return scores.results()
