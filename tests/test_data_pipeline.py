"""The input pipeline: batches, flips, order, resume, epochs, eval padding, sharding, groups."""

import json

import ml_collections
import numpy as np
import pytest
from PIL import Image

from coseg_jax import config as config_lib
from coseg_jax.data import pipeline
from coseg_jax.data import synthetic

SIZE = 32


def _config(**overrides):
  config = config_lib.default_config().data
  config.update(dataset="synthetic", image_size=SIZE, num_threads=2, prefetch=2,
                synthetic={"num_categories": 4, "num_train_pairs": 10, "num_pairs": 10})
  config.update(overrides)
  return config


def _take(iterator, n):
  return [next(iterator) for _ in range(n)]


def _assert_same(batches, others):
  assert len(batches) == len(others)
  for batch, other in zip(batches, others):
    assert batch.keys() == other.keys()
    for key in batch:
      np.testing.assert_array_equal(batch[key], other[key], err_msg=key)


def _source(config, split):
  settings = config.synthetic
  count = settings.num_pairs if split != "train" else settings.num_train_pairs
  return synthetic.SyntheticPairs(count, SIZE, settings.num_categories, settings.seed, split)


def test_eval_batches_are_uint8_pairs_in_order_then_padded():
  config = _config()
  batches = list(pipeline.build(config, split="val", batch_size=4, seed=0))
  assert len(batches) == 3 == len(pipeline.dataset(config, split="val", batch_size=4, seed=0))
  batch = batches[0]
  assert batch["image_a"].shape == (4, SIZE, SIZE, 3) and batch["image_a"].dtype == np.uint8
  assert batch["mask_b"].shape == (4, SIZE, SIZE) and batch["mask_b"].dtype == np.uint8
  source = _source(config, "val")
  for row in range(4):
    for key in ("image_a", "image_b"):
      np.testing.assert_array_equal(batch[key][row], source[row][key])
    np.testing.assert_array_equal(batch["mask_a"][row], source[row]["mask_a"])
  index = np.concatenate([b["index"] for b in batches])
  valid = np.concatenate([b["valid"] for b in batches])
  np.testing.assert_array_equal(index, list(range(10)) + [-1, -1])
  np.testing.assert_array_equal(valid, index >= 0)
  assert (batches[-1]["mask_a"][2:] == pipeline.IGNORE).all()


def test_train_flips_each_image_independently():
  config = _config()
  source = _source(config, "train")
  flips = []
  for batch in _take(pipeline.build(config, split="train", batch_size=5, seed=1), 6):
    for row, index in enumerate(batch["index"]):
      sample = source[int(index)]
      for side in ("a", "b"):
        plain = sample[f"image_{side}"]
        flipped = np.array_equal(batch[f"image_{side}"][row], plain[:, ::-1])
        assert flipped or np.array_equal(batch[f"image_{side}"][row], plain)
        mask = sample[f"mask_{side}"][:, ::-1] if flipped else sample[f"mask_{side}"]
        np.testing.assert_array_equal(batch[f"mask_{side}"][row], mask)
        flips.append(flipped)
  flips = np.array(flips).reshape(-1, 2)
  assert 0.2 < flips.mean() < 0.8
  assert (flips[:, 0] != flips[:, 1]).any()  # a and b are flipped independently
  unflipped = _take(pipeline.build(_config(flip=False), split="train", batch_size=5, seed=1), 2)
  for row, index in enumerate(unflipped[0]["index"]):
    np.testing.assert_array_equal(unflipped[0]["image_a"][row],
                                  source[int(index)]["image_a"])


def test_train_order_depends_only_on_the_seed_and_epochs_reshuffle():
  config = _config()
  first = _take(pipeline.build(config, split="train", batch_size=5, seed=7), 4)
  _assert_same(first, _take(pipeline.build(config, split="train", batch_size=5, seed=7), 4))
  other = _take(pipeline.build(config, split="train", batch_size=5, seed=8), 4)
  assert not all(np.array_equal(a["index"], b["index"]) for a, b in zip(first, other))
  order = np.concatenate([b["index"] for b in first])  # 20 pairs = two epochs of 10
  assert sorted(order[:10]) == list(range(10)) == sorted(order[10:])
  assert not np.array_equal(order[:10], order[10:])


def test_resumed_iterator_gives_bit_identical_batches():
  config = _config()
  uninterrupted = pipeline.build(config, split="train", batch_size=3, seed=5)
  _take(uninterrupted, 3)
  interrupted = pipeline.build(config, split="train", batch_size=3, seed=5)
  _take(interrupted, 3)
  state = json.loads(json.dumps(interrupted.get_state()))
  expected = _take(uninterrupted, 5)
  resumed = pipeline.build(config, split="train", batch_size=3, seed=5)
  resumed.set_state(state)
  _assert_same(_take(resumed, 5), expected)


@pytest.mark.parametrize("split", ["train", "test"])
def test_shards_concatenate_to_the_global_batch(split):
  config = _config()
  whole = _take(pipeline.build(config, split=split, batch_size=4, seed=2), 2)
  shards = [_take(pipeline.build(config, split=split, batch_size=4, seed=2, shard_index=k,
                                 shard_count=2), 2) for k in range(2)]
  for step in range(2):
    for key in whole[step]:
      np.testing.assert_array_equal(
          np.concatenate([shards[0][step][key], shards[1][step][key]]), whole[step][key])


def test_config_errors_name_the_key():
  with pytest.raises(ValueError, match="unknown config key config.data.imagesize; known keys"):
    pipeline.build(_config(imagesize=3), split="train", batch_size=2, seed=0)
  with pytest.raises(ValueError, match="config.data.dataset = 'coco' is invalid"):
    pipeline.build(_config(dataset="coco"), split="train", batch_size=2, seed=0)
  with pytest.raises(ValueError, match="config.data.root is empty"):
    pipeline.build(_config(dataset="voc"), split="train", batch_size=2, seed=0)
  with pytest.raises(ValueError, match="batch_size=3.*shard_count=2"):
    pipeline.build(_config(), split="train", batch_size=3, seed=0, shard_count=2)
  with pytest.raises(ValueError, match="split='dev'"):
    pipeline.build(_config(), split="dev", batch_size=2, seed=0)


def test_plain_dict_config_and_resizing(tmp_path):
  for group, sizes in {"g1": [(30, 40), (50, 20), (24, 24)], "g2": [(20, 30), (40, 40)]}.items():
    for n, (height, width) in enumerate(sizes):
      for folder in ("images", "masks"):
        (tmp_path / folder / group).mkdir(parents=True, exist_ok=True)
      rng = np.random.default_rng(n)
      Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(
          tmp_path / "images" / group / f"{n}.png")
      Image.fromarray((rng.uniform(size=(height, width)) > 0.5).astype(np.uint8) * 255).save(
          tmp_path / "masks" / group / f"{n}.png")
  config = {"dataset": "folder", "root": str(tmp_path), "image_size": 32, "num_threads": 1}
  batches = list(pipeline.build(config, split="test", batch_size=2, seed=0))
  valid = np.concatenate([b["valid"] for b in batches])
  assert valid.sum() == 3 + 1  # all pairs within g1 and g2
  masks = np.concatenate([b["mask_a"] for b in batches])[valid]
  assert masks.shape == (4, 32, 32) and set(np.unique(masks)) == {0, 1}
  groups = list(pipeline.iterate_groups(ml_collections.ConfigDict(config)))
  assert [g["name"] for g in groups] == ["g1", "g2"]
  assert groups[0]["inputs"].shape == (3, 32, 32, 3)
  assert [m.shape for m in groups[0]["masks"]] == [(30, 40), (50, 20), (24, 24)]
  only = {**config, "groups": "g2"}
  assert len(list(pipeline.build(only, split="val", batch_size=1, seed=0))) == 1
  subset = {**config, "max_eval_pairs": 2}
  indices = np.concatenate([b["index"] for b in pipeline.build(subset, split="val", batch_size=2,
                                                               seed=0)])
  np.testing.assert_array_equal(indices, [0, 3])  # evenly spread over the 4 pairs
  broken = tmp_path / "images" / "g2" / "1.png"
  broken.write_bytes(broken.read_bytes()[:-40])  # truncated: fails in a worker thread
  with pytest.raises(Exception, match="1.png"):
    list(pipeline.build(only, split="val", batch_size=1, seed=0))


def test_synthetic_groups_and_voc_has_none():
  config = _config(synthetic={"num_groups": 2, "group_size": 3})
  groups = list(pipeline.iterate_groups(config, split="val"))
  assert len(groups) == 2 and groups[0]["inputs"].shape == (3, SIZE, SIZE, 3)
  assert groups[0]["inputs"].dtype == np.uint8 and groups[0]["masks"][0].dtype == bool
  with pytest.raises(ValueError, match="VOC 2012 has no groups"):
    next(pipeline.iterate_groups(_config(dataset="voc", root="/x")))


def test_real_folder_pipeline(data_dir):
  config = _config(dataset="folder", root=str(data_dir / "msrc_cow"), image_size=32)
  batch = next(pipeline.build(config, split="train", batch_size=2, seed=0))
  assert batch["image_a"].shape == (2, 32, 32, 3)
  assert set(np.unique(batch["mask_a"])) <= {0, 1} and batch["mask_a"].any()
