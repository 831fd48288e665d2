"""The recipe's pairs that reward following the partner (coseg_jax.proj.real_photos.pairs):
pasted pairs (one object pasted into two unrelated photos) and lacking pairs (the partner
lacks the photo's class), their targets, and the recipe training with them and the cue."""

import functools

import jax
import numpy as np
import pytest

from coseg_jax import config as config_lib
from coseg_jax.data import folders
from coseg_jax.proj.real_photos import pairs, recipe, views
from coseg_jax.training import trainer as train_lib

from test_views import SIZE, views_config, write_folder_dataset


@pytest.fixture(name="groups")
def fixture_groups(tmp_path):
  dataset = folders.scan(write_folder_dataset(tmp_path / "data"))
  return [folders.load_group(g) for g in dataset.groups]


def indexed(v):
  """Features whose every value is the view's row, so a batch tells which views it took."""
  return np.arange(len(v.labels), dtype=np.float16)[:, None, None, None] * np.ones(
      (1, 2, 2, 4), np.float16)


def rows_of(batch):
  return (batch["features_a"][:, 0, 0, 0].astype(int), batch["features_b"][:, 0, 0, 0].astype(int))


def test_pasted_pairs_share_only_the_pasted_object(groups):
  v = pairs.render_pasted(groups, pairs.PastedConfig(size=SIZE, pairs_per_image=2, seed=3))
  assert len(v.labels) == 9 * 2 * 2  # every image is the donor twice, two views per pair
  assert v.images.shape == (36, SIZE, SIZE, 3)
  for first, second in np.arange(len(v.labels)).reshape(-1, 2):
    assert v.pasted[first] == v.pasted[second]  # the same donor's group
    assert v.own[first] != v.own[second]  # two unrelated photos
    assert v.pasted[first] not in (v.own[first], v.own[second])
    for i, j in ((first, second), (second, first)):
      target = views.targets(v.labels[i], v.own[i], v.pasted[i], v.own[j], v.pasted[j])
      np.testing.assert_array_equal(target, v.labels[i] == views.PASTED)
      assert target.any() and (v.labels[i] == views.OWN).any()  # own object: background
  again = pairs.render_pasted(groups, pairs.PastedConfig(size=SIZE, pairs_per_image=2, seed=3))
  np.testing.assert_array_equal(again.images, v.images)


def test_pasted_pairs_need_three_groups(groups):
  with pytest.raises(ValueError, match="at least three groups"):
    pairs.render_pasted(groups[:2], pairs.PastedConfig(size=SIZE))


def joined(groups):
  plain = views.render(groups, views.ViewConfig(size=SIZE, crops=1, composites=1))
  pasted = pairs.render_pasted(groups, pairs.PastedConfig(size=SIZE))
  v = pairs.join(plain, pasted)
  rows = len(plain.labels) + np.arange(len(pasted.labels)).reshape(-1, 2)
  return v, rows


def sampler(v, rows, **kwargs):
  return pairs.RecipePairSampler(v, indexed(v), pasted_rows=rows,
                                 **{"batch_size": 16, "seed": 1, **kwargs})


def test_the_sampler_draws_pasted_pairs_with_their_masks(groups):
  v, rows = joined(groups)
  batch = next(sampler(v, rows, pasted=1.0))
  a, b = rows_of(batch)
  pair_of = {tuple(sorted(r)) for r in rows}
  assert all(tuple(sorted(p)) in pair_of for p in zip(a, b))
  np.testing.assert_array_equal(batch["mask_a"], v.labels[a] == views.PASTED)
  np.testing.assert_array_equal(batch["mask_b"], v.labels[b] == views.PASTED)


def test_lacking_pairs_have_an_object_and_an_empty_target(groups):
  v, rows = joined(groups)
  batch = next(sampler(v, rows, lacking=1.0))
  a, b = rows_of(batch)
  assert np.all(v.pasted[a] == views.NONE)  # a plain photo ...
  assert all((v.labels[i] == views.OWN).any() for i in a)  # ... with its object in view
  assert np.all((v.own[b] != v.own[a]) & (v.pasted[b] != v.own[a]))  # the partner lacks it
  assert batch["mask_a"].max() == 0 and batch["mask_b"].max() == 0


def test_mixed_fractions_and_off_by_default(groups):
  v, rows = joined(groups)
  batch = next(sampler(v, rows, pasted=0.5, lacking=0.25, batch_size=64))
  a, _ = rows_of(batch)
  assert 10 < np.isin(a, rows).sum() < 54
  plain = views.PairSampler(v, indexed(v), batch_size=16, seed=1, negatives=0.1)
  off = sampler(v, rows, negatives=0.1)
  for _ in range(2):
    expected, got = next(plain), next(off)
    for key in expected:
      np.testing.assert_array_equal(got[key], expected[key])


def test_fractions_are_checked(groups):
  v, rows = joined(groups)
  with pytest.raises(ValueError, match="pasted_pairs > 0"):
    sampler(v, None, pasted=0.2)
  with pytest.raises(ValueError, match="at most 1"):
    sampler(v, rows, pasted=0.7, lacking=0.5)
  config = recipe.add_config(config_lib.default_config())
  config.data.views.lacking = 1.5
  with pytest.raises(ValueError, match=r"config.data.views.lacking = 1.5 is invalid"):
    config_lib.validate(config, training=False)


@pytest.mark.slow
def test_the_recipe_trains_with_the_cue_and_the_new_pairs(tmp_path):
  """End to end: views + pasted pairs encoded and cached, FCA with model.cue, 4 steps."""
  config = views_config(write_folder_dataset(tmp_path / "data"), tmp_path / "cache", steps=4)
  config.model.cue = "correlation"
  config.data.views.pasted_pairs = 1
  config.data.views.pasted = 0.4
  config.data.views.lacking = 0.2
  config_lib.validate(config)
  initial = train_lib.create_state(config, train_lib.models.build(config.model),
                                   jax.random.key(config.seed)).params
  state = train_lib.train_and_evaluate(config, str(tmp_path / "run"))
  params = jax.tree.map(np.asarray, state.params)
  changed = lambda *path: np.abs(np.asarray(functools.reduce(dict.get, path, params))
                                 - functools.reduce(dict.get, path, initial)).max() > 0
  assert changed("correlation", "slots", "kernel") and changed("correlation", "saliency")
  assert changed("decoder", "conv_0", "kernel")
  assert len(list((tmp_path / "cache").iterdir())) == 2  # the views' cache and the pairs'
