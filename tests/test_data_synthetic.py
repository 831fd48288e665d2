"""The synthetic co-segmentation set: determinism, masks, distractors, groups."""

import numpy as np
import pytest

from coseg_jax.data import synthetic


def _categories(labels):
  return set(np.unique(labels[labels >= 0]).tolist())


def test_pairs_are_a_pure_function_of_seed_split_and_index():
  pairs = synthetic.SyntheticPairs(10, image_size=32, num_categories=5, seed=3)
  again = synthetic.SyntheticPairs(10, image_size=32, num_categories=5, seed=3)
  for key in ("image_a", "mask_a", "image_b", "mask_b"):
    np.testing.assert_array_equal(pairs[7][key], again[7][key])
  assert not np.array_equal(pairs[7]["image_a"], pairs[6]["image_a"])
  other_seed = synthetic.SyntheticPairs(10, image_size=32, num_categories=5, seed=4)
  assert not np.array_equal(pairs[7]["image_a"], other_seed[7]["image_a"])
  val = synthetic.SyntheticPairs(10, image_size=32, num_categories=5, seed=3, split="val")
  assert not np.array_equal(pairs[7]["image_a"], val[7]["image_a"])
  with pytest.raises(IndexError):
    pairs[10]  # pylint: disable=pointless-statement


@pytest.mark.parametrize("size", [24, 80])
def test_any_image_size(size):
  sample = synthetic.SyntheticPairs(2, image_size=size)[1]
  assert sample["image_a"].shape == (size, size, 3) and sample["image_a"].dtype == np.uint8
  assert sample["mask_b"].shape == (size, size) and sample["mask_b"].dtype == np.uint8


def test_masks_are_the_shared_categories_and_distractors_are_one_sided():
  pairs = synthetic.SyntheticPairs(40, image_size=48, num_categories=6)
  with_distractor = 0
  for i in range(len(pairs)):
    pair, sample = pairs.render(i), pairs[i]
    in_a, in_b = _categories(pair["labels_a"]), _categories(pair["labels_b"])
    assert set(pair["shared"]) == in_a & in_b and pair["shared"]
    for side in ("a", "b"):
      labels = pair[f"labels_{side}"]
      expected = np.isin(labels, pair["shared"])
      np.testing.assert_array_equal(sample[f"mask_{side}"], expected.astype(np.uint8))
      assert expected.any()
    with_distractor += bool(in_a ^ in_b)
  assert with_distractor > 0.7 * len(pairs)


def test_objects_vary_but_categories_keep_their_colour():
  pairs = synthetic.SyntheticPairs(30, image_size=48, num_categories=4)
  means = {c: [] for c in range(4)}
  for i in range(len(pairs)):
    pair = pairs.render(i)
    for side in ("a", "b"):
      labels, image = pair[f"labels_{side}"], pair[f"image_{side}"].astype(float)
      for c in _categories(labels):
        means[c].append(image[labels == c].mean(axis=0))
  centres = {c: np.mean(m, axis=0) for c, m in means.items()}
  spread = max(np.linalg.norm(np.asarray(m) - centres[c], axis=1).mean() for c, m in means.items())
  gaps = [np.linalg.norm(centres[a] - centres[b]) for a in range(4) for b in range(a)]
  assert spread > 3  # instances are not identical
  assert min(gaps) > 2 * spread  # but the categories stay apart in colour
  assert len({shape for shape, _, _ in synthetic.CATEGORIES}) == len(synthetic.CATEGORIES)
  assert len({colour for _, colour, _ in synthetic.CATEGORIES}) == len(synthetic.CATEGORIES)


def test_objectness_oracle_is_far_from_perfect():
  pairs = synthetic.SyntheticPairs(150, image_size=32)
  jaccard = synthetic.objectness_oracle_jaccard(pairs)
  assert 0.35 < jaccard < 0.7
  assert 0.3 < synthetic.objectness_oracle_jaccard(pairs, pooled=True) < 0.7
  groups = synthetic.group_objectness_oracle_jaccard(4, image_size=32, group_size=6)
  assert 0.3 < groups < 0.8


def test_oracle_scores_mask_over_object_pixels():
  pairs = synthetic.SyntheticPairs(3, image_size=32)
  shared = objects = 0
  for i in range(3):
    sample, labels = pairs[i], pairs.render(i)
    for side in "ab":
      shared += sample[f"mask_{side}"].sum()
      objects += (labels[f"labels_{side}"] >= 0).sum()
  assert synthetic.objectness_oracle_jaccard(pairs, pooled=True) == pytest.approx(shared / objects)


@pytest.mark.parametrize("fraction,holders", [(1.0, 6), (0.5, 3)])
def test_groups_share_one_common_category(fraction, holders):
  group = synthetic.render_group(2, image_size=32, num_categories=6, group_size=6,
                                 common_fraction=fraction)
  assert len(group["images"]) == len(group["masks"]) == len(group["files"]) == 6
  assert sum(mask.any() for mask in group["masks"]) == holders
  again = synthetic.render_group(2, image_size=32, num_categories=6, group_size=6,
                                 common_fraction=fraction)
  np.testing.assert_array_equal(group["images"][5], again["images"][5])
  assert group["masks"][0].dtype == bool


def test_group_distractors_stay_in_few_images():
  for index in range(4):
    group = synthetic.render_group(index, seed=1, image_size=32, num_categories=8, group_size=9)
    images_with = {}
    for labels, mask in zip(group["labels"], group["masks"]):
      np.testing.assert_array_equal(mask, labels == group["common"])
      for c in _categories(labels):
        images_with[c] = images_with.get(c, 0) + 1
    assert images_with.pop(group["common"]) == 9
    assert max(images_with.values()) <= 9 // 3


def test_bad_arguments_are_named():
  with pytest.raises(ValueError, match="num_categories=11"):
    synthetic.SyntheticPairs(4, num_categories=11)
  with pytest.raises(ValueError, match="unknown split 'dev'"):
    synthetic.SyntheticPairs(4, split="dev")
  with pytest.raises(ValueError, match="common_fraction=0"):
    synthetic.render_group(0, common_fraction=0)
