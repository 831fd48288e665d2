"""Frozen encoder with cached features: same training as without the cache, fewer encodes."""

import os
import sys

import jax
import numpy as np
import pytest

from coseg_jax import config as config_lib
from coseg_jax.training import trainer as train_lib
from coseg_jax.training.feature_cache import FeatureCache

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_driver import tiny_config  # pylint: disable=g-import-not-at-top,wrong-import-position


def frozen_config(cache, skip=""):
  config = tiny_config(steps=4)
  config.model.skip = skip
  config.model.dropout_rate = 0.0
  config.data.synthetic.num_train_pairs = 4  # one batch a epoch: images repeat from step 2 on
  config.data.flip = False
  config.train.checkpoint_every = 4
  config.train.freeze_encoder = True
  config.train.cache_features = cache
  return config


@pytest.mark.slow
@pytest.mark.parametrize("skip", ["", "pool4"])
def test_cached_training_equals_uncached(tmp_path, skip):
  config = frozen_config(True, skip)
  initial = train_lib.create_state(config, train_lib.models.build(config.model),
                                   jax.random.key(config.seed)).params
  states = [train_lib.train_and_evaluate(frozen_config(cache, skip), str(tmp_path / str(cache)))
            for cache in (False, True)]
  plain, cached = (jax.tree.map(np.asarray, s.params) for s in states)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), plain, cached)
  jax.tree.map(np.testing.assert_array_equal, cached["encoder"], initial["encoder"])  # frozen
  assert np.abs(cached["decoder"]["conv_0"]["kernel"]
                - initial["decoder"]["conv_0"]["kernel"]).max() > 0  # trained


@pytest.mark.parametrize("skip", ["", "pool4", "pool3"])
def test_cache_encodes_each_image_once(skip):
  config = frozen_config(True, skip)
  model = train_lib.models.build(config.model)
  state = train_lib.create_state(config, model, jax.random.key(0))
  # 3 images missing, encoded 2 at a time: the second chunk is padded
  cache = FeatureCache(model, {"params": state.params}, max_entries=3, chunk_size=2)
  rng = np.random.RandomState(0)
  images = rng.randn(4, 64, 64, 3).astype(np.float32)
  batch = {"image_a": images[:2], "image_b": images[[2, 0]], "mask_a": 0, "mask_b": 0}
  out = cache(batch)
  assert cache.misses == 3 and cache.hits == 1  # image 0 appears twice
  direct = model.apply({"params": state.params}, images[:3], method=model.encode)
  close = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  jax.tree.map(close, out["features_a"], jax.tree.map(lambda x: x[:2], direct))
  jax.tree.map(close, out["features_b"], jax.tree.map(lambda x: np.asarray(x)[[2, 0]], direct))
  cache(batch)
  assert cache.hits == 5 and len(cache.entries) == 3


def test_cache_needs_a_frozen_encoder():
  config = frozen_config(True)
  config.train.freeze_encoder = False
  with pytest.raises(ValueError, match="cache_features=True needs"):
    config_lib.validate(config)
