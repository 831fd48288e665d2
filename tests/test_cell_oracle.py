"""bench/cell_oracle.py: synthetic masks with known answers, and the real MSRC cow group."""

import numpy as np
import pytest

from bench import cell_oracle
from coseg_jax import metrics


def jaccard(mask, c, resample="area"):
  """Per-image Jaccard of the c x c oracle of one bool mask."""
  return float(metrics.per_image(cell_oracle.oracle_counts([mask], c, resample))["jaccard"][0])


@pytest.mark.parametrize("resample", cell_oracle.RESAMPLE)
def test_mask_on_the_cell_grid_scores_100(resample):
  mask = np.zeros((128, 128), bool)
  mask[:, 16:80] = True  # columns of cells 1..4 of an 8 x 8 grid (16 px cells), full height
  assert jaccard(mask, 8, resample) == 1.0


@pytest.mark.parametrize("resample", cell_oracle.RESAMPLE)
def test_one_pixel_line_scores_0(resample):
  mask = np.zeros((128, 96), bool)
  mask[37, :] = True  # at most 1/16 of any 8 x 8 cell (16 px tall)
  assert jaccard(mask, 8, resample) == 0.0


def test_empty_and_full_masks():
  assert jaccard(np.zeros((40, 50), bool), 8) == 1.0  # empty union counts as 1, like the eval
  assert jaccard(np.ones((40, 50), bool), 8) == 1.0


def test_area_weights_are_fractional_means():
  weights = cell_oracle.area_weights(10, 4)  # cells 2.5 px wide
  np.testing.assert_allclose(weights.sum(axis=1), 1.0)
  np.testing.assert_allclose(weights[0] * 2.5, [1, 1, 0.5, 0, 0, 0, 0, 0, 0, 0])
  np.testing.assert_allclose(weights[1] * 2.5, [0, 0, 0.5, 1, 1, 0, 0, 0, 0, 0])


def test_modes_agree_when_cells_divide_the_mask():
  mask = np.random.default_rng(0).random((64, 96)) > 0.7
  expected = cell_oracle.cells(mask, 8, "area")
  for resample in ("split", "box"):
    np.testing.assert_allclose(cell_oracle.cells(mask, 8, resample), expected, atol=1e-6)


def test_finer_cells_score_higher_on_a_disc():
  yy, xx = np.mgrid[:150, :200]
  disc = (yy - 70) ** 2 + (xx - 110) ** 2 < 45 ** 2
  scores = [jaccard(disc, c) for c in (4, 8, 16, 32)]
  assert scores == sorted(scores) and scores[-1] > 0.97


def test_msrc_cow(data_dir):
  root = data_dir / "msrc_cow"
  if not root.is_dir():
    pytest.skip(f"{root} not found")
  masks = cell_oracle.read_masks(root)
  table, average = cell_oracle.class_table(masks, 8)
  assert sum(row["images"] for row in table.values()) == 30
  assert average["jaccard"] == pytest.approx(0.790, abs=0.005)  # measured: 79.0
