"""Precision and Jaccard on hand-made masks, both averaging conventions."""

import numpy as np
import pytest

from coseg_jax import metrics


def masks():
  truth = np.array([[[1, 1, 0, 0],
                     [1, 1, 0, 255]],
                    [[0, 0, 0, 0],
                     [0, 0, 0, 0]],
                    [[0, 1, 1, 1],
                     [0, 0, 0, 0]]], np.uint8)
  predicted = np.array([[[1, 0, 0, 0],
                         [1, 1, 1, 1]],
                        [[0, 0, 0, 0],
                         [0, 0, 0, 0]],
                        [[1, 1, 0, 0],
                         [0, 0, 0, 0]]], bool)
  return predicted, truth


def test_counts_and_per_image():
  c = metrics.counts(*masks())
  np.testing.assert_array_equal(c["intersection"], [3, 0, 1])
  np.testing.assert_array_equal(c["union"], [5, 0, 4])  # the void pixel is not counted
  np.testing.assert_array_equal(c["correct"], [5, 8, 5])
  np.testing.assert_array_equal(c["counted"], [7, 8, 8])
  m = metrics.per_image(c)
  np.testing.assert_allclose(m["jaccard"], [3 / 5, 1.0, 1 / 4])  # empty vs empty = 1
  np.testing.assert_allclose(m["precision"], [5 / 7, 1.0, 5 / 8])


def test_pooled_differs_from_mean_of_images():
  c = metrics.counts(*masks())
  p = metrics.pooled(c)
  assert p["jaccard"] == pytest.approx(4 / 9)
  assert p["precision"] == pytest.approx(18 / 23)
  assert p["jaccard"] != pytest.approx(np.mean(metrics.per_image(c)["jaccard"]))


def test_group_means_then_class_average():
  c = metrics.counts(*masks())
  table = metrics.group_means(c, ["cow", "cow", "bus"])
  assert table["cow"]["jaccard"] == pytest.approx((3 / 5 + 1) / 2)
  assert table["bus"] == {"precision": 5 / 8, "jaccard": 1 / 4, "images": 1}
  assert list(table) == ["cow", "bus"]
  avg = metrics.class_average(table)
  assert avg["jaccard"] == pytest.approx(((3 / 5 + 1) / 2 + 1 / 4) / 2)


def test_shape_mismatch_is_an_error():
  with pytest.raises(ValueError, match="shape"):
    metrics.counts(np.zeros((1, 2, 2), bool), np.zeros((1, 2, 3), np.uint8))


def test_concat():
  c = metrics.counts(*masks())
  both = metrics.concat([c, c])
  assert both["union"].tolist() == [5, 0, 4, 5, 0, 4]


def test_cross_entropy_ignores_void_and_weights_foreground():
  from coseg_jax import losses  # pylint: disable=g-import-not-at-top
  logits = np.zeros((1, 1, 3, 2), np.float32)
  logits[0, 0, 0] = (0.0, 2.0)  # confident foreground
  labels = np.array([[[1, 0, losses.IGNORE]]], np.uint8)
  per_pixel = [np.log1p(np.exp(-2.0)), np.log(2.0)]  # pixel 0 (fg, sure), pixel 1 (bg, 50:50)
  np.testing.assert_allclose(losses.cross_entropy(logits, labels), np.mean(per_pixel), rtol=1e-6)
  np.testing.assert_allclose(losses.cross_entropy(logits, labels, foreground_weight=3.0),
                             (3 * per_pixel[0] + per_pixel[1]) / 2, rtol=1e-6)
