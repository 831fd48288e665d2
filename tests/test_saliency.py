"""Co-saliency metrics on hand-checked maps, the adaptive Jaccard, maps in the eval-co-sod layout."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from coseg_jax import maps, metrics, pictures
from coseg_jax.evaluators import groups as group_protocol, saliency as sod_metrics

pytest.importorskip("py_sod_metrics", reason="the [sod] extra (pysodmetrics) is not installed")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def enhanced(prediction_dev, truth_dev):
  """The E-measure's enhanced alignment of one pixel from its two deviations from the mean."""
  align = 2 * prediction_dev * truth_dev / (prediction_dev ** 2 + truth_dev ** 2)
  return (align + 1) ** 2 / 4


def one_false_positive():
  """4 x 4: the truth is the top-left 2 x 2 square; the map adds one background pixel."""
  truth = np.zeros((4, 4), bool)
  truth[:2, :2] = True
  saved = truth.astype(np.uint8) * 255
  saved[3, 3] = 255
  return saved, truth


def test_perfect_map():
  truth = np.zeros((32, 32), bool)
  truth[8:20, 4:30] = True
  scores = sod_metrics.SodScores()
  scores.add(truth.astype(np.uint8) * 255, truth)
  r = scores.results()
  assert r["s_measure"] == pytest.approx(1.0) and r["mae"] == 0
  assert r["f_max"] == pytest.approx(1.0) and r["f_adaptive"] == pytest.approx(1.0)
  # The E-measure sums the enhanced alignment (1 everywhere) over N - 1, as the MATLAB code.
  assert r["e_max"] == pytest.approx(1024 / 1023) and r["e_adaptive"] == pytest.approx(1024 / 1023)


def test_one_false_positive_by_hand():
  saved, truth = one_false_positive()
  scores = sod_metrics.SodScores()
  scores.add(saved, truth)
  r = scores.results()
  assert r["mae"] == pytest.approx(1 / 16) and r["images"] == 1
  # Thresholds 1..255 select the 5 white pixels: P = 4/5, R = 1; threshold 0 selects all 16.
  f_white = 1.3 * 0.8 * 1 / (0.3 * 0.8 + 1)
  f_all = 1.3 * 0.25 * 1 / (0.3 * 0.25 + 1)
  assert r["f_max"] == pytest.approx(f_white)
  assert r["f_mean"] == pytest.approx((255 * f_white + f_all) / 256)
  assert r["f_adaptive"] == pytest.approx(f_white)  # 2 x mean = 0.625 keeps the 5 pixels
  # Map mean 5/16, truth mean 4/16; pixels: 4 true positives, 1 false positive, 11 true negatives.
  e_white = (4 * enhanced(11 / 16, 12 / 16) + enhanced(11 / 16, -4 / 16)
             + 11 * enhanced(-5 / 16, -4 / 16)) / 15
  e_all = 16 * 0.25 / 15  # a constant map: no alignment, enhanced 1/4 everywhere
  assert r["e_max"] == pytest.approx(e_white) and r["e_adaptive"] == pytest.approx(e_white)
  assert r["e_mean"] == pytest.approx((255 * e_white + e_all) / 256)


def test_scores_are_means_over_images():
  saved, truth = one_false_positive()
  scores = sod_metrics.SodScores()
  scores.add(saved, truth)
  scores.add(truth.astype(np.uint8) * 255, truth)
  assert scores.results()["mae"] == pytest.approx(1 / 32)
  with pytest.raises(ValueError, match="uint8 map"):
    scores.add(saved.astype(np.float32), truth)


def test_adaptive_threshold_is_mean_plus_std_capped():
  column = np.array([0.4, 0.0, 0.0, 0.0])
  probs = np.tile(column, (4, 1))
  # mean 0.1, std sqrt(0.03) = 0.173: threshold 0.273 keeps column 0, which 0.5 does not.
  assert maps.adaptive_threshold(probs) == pytest.approx(0.1 + np.sqrt(0.03))
  assert maps.adaptive_threshold(np.tile([1.0, 1.0, 0.0, 0.0], (4, 1))) == 0.8  # 1.0 capped
  truth = np.zeros((4, 4), bool)
  truth[:, 0] = True
  fixed = metrics.per_image(group_protocol.original_size_counts(probs[None], [truth]))
  adaptive = metrics.per_image(group_protocol.original_size_counts(probs[None], [truth], "adaptive"))
  assert fixed["jaccard"][0] == 0 and adaptive["jaccard"][0] == pytest.approx(1.0)


def test_parse_threshold():
  assert maps.parse_threshold("adaptive") == "adaptive"
  assert maps.parse_threshold("0.3") == 0.3
  for bad in ("1.5", "mean", "0"):
    with pytest.raises(ValueError, match="expected 'adaptive', 'otsu' or a number in"):
      maps.parse_threshold(bad)


def test_maps_are_written_in_the_eval_co_sod_layout(tmp_path):
  saved, truth = one_false_positive()
  group = {"name": "cow", "files": ["img_1.jpg", "img_2.jpg"], "inputs": np.zeros((2, 4, 4, 3)),
           "masks": [truth, truth]}
  maps = saved.astype(np.float32) / 255
  writer = sod_metrics.MapWriter(tmp_path / "pred", "mine", "msrc", ["fixed"])
  results = group_protocol.evaluate(iter([group]), {"fixed": lambda x: np.stack([maps, maps])},
                                     map_writer=writer)
  path = tmp_path / "pred" / "mine" / "msrc" / "cow" / "img_2.png"
  np.testing.assert_array_equal(np.asarray(Image.open(path)), saved)
  sod = writer.results()["fixed"]
  assert sod["mae"] == pytest.approx(1 / 16) and sod["images"] == 2
  assert sod["maps"] == str(tmp_path / "pred" / "mine" / "msrc")
  assert results["fixed"]["average"]["jaccard"] == pytest.approx(4 / 5)
  assert pictures.probability_image(np.array([0.0, 0.5, 1.0, 1.2]))[1:].tolist() == [128, 255, 255]
  two = sod_metrics.MapWriter(tmp_path, "m", "d", ["group_mean", "group_min"])
  assert two.method_name("group_min") == "m_group_min"


@pytest.mark.slow
def test_score_folder_cli_scores_saved_maps(tmp_path):
  saved, truth = one_false_positive()
  for folder, array in (("images", np.zeros((4, 4, 3), np.uint8)),
                        ("masks", truth.astype(np.uint8) * 255), ("pred", saved)):
    (tmp_path / folder / "cow").mkdir(parents=True)
    Image.fromarray(array).save(tmp_path / folder / "cow" / "a.png")
  result = subprocess.run([sys.executable, "-m", "coseg_jax.apps.scores", "--pred",
                           str(tmp_path / "pred"), "--gt", str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  assert json.loads(result.stdout)["mae"] == pytest.approx(1 / 16)
  (tmp_path / "pred" / "cow" / "a.png").unlink()
  result = subprocess.run([sys.executable, "-m", "coseg_jax.apps.scores", "--pred",
                           str(tmp_path / "pred"), "--gt", str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 1 and "a.png: no such prediction map" in result.stderr
  assert "Traceback" not in result.stderr


def test_real_msrc_maps_round_trip_through_the_layout(data_dir, tmp_path):
  """center_box maps of msrc_cow: saved in the layout, re-scored from the files identically."""
  from coseg_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  root = data_dir / "msrc_cow"
  if not root.is_dir():
    pytest.skip(f"{root} not found")
  groups = pipeline.iterate_groups({"dataset": "folder", "root": str(root), "image_size": 64})
  writer = sod_metrics.MapWriter(tmp_path / "pred", "box", "msrc_cow", ["center_box"])
  group_protocol.evaluate(groups, {"center_box": group_protocol.center_box}, map_writer=writer)
  saved = writer.results()["center_box"]
  maps = sorted((tmp_path / "pred" / "box" / "msrc_cow" / "msrc_cow").glob("*.png"))
  assert len(maps) == saved["images"] == 30
  rescored = sod_metrics.score_folder(tmp_path / "pred" / "box" / "msrc_cow", root)
  assert rescored == {k: v for k, v in saved.items() if k != "maps"}
  assert 0 < saved["mae"] < 1 and 0 < saved["s_measure"] < 1
