"""Augmented views, composites and their pairs (coseg_jax.proj.real_photos.views), cached
features."""

import functools
import os
import shutil
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from coseg_jax import config as config_lib
from coseg_jax.data import folders
from coseg_jax.proj.real_photos import recipe, row_files, view_cache, views
from coseg_jax.training import feature_cache, trainer as train_lib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_driver import tiny_config  # pylint: disable=g-import-not-at-top,wrong-import-position

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}
SIZE = 64


def write_folder_dataset(root, per_group=3, height=48, width=72):
  """root/images/<colour>/img_k.png (a coloured box on grey noise) + root/masks/... ."""
  rng = np.random.default_rng(0)
  for name, colour in COLOURS.items():
    for k in range(per_group):
      image = rng.integers(90, 140, (height, width, 3)).astype(np.uint8)
      mask = np.zeros((height, width), bool)
      top, left = rng.integers(4, 16), rng.integers(4, 30)
      mask[top:top + 24, left:left + 30] = True
      image[mask] = colour
      for kind, array in (("images", image), ("masks", mask.astype(np.uint8) * 255)):
        folder = root / kind / name
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(folder / f"img_{k}.png")
  return root


@pytest.fixture(name="groups")
def fixture_groups(tmp_path):
  dataset = folders.scan(write_folder_dataset(tmp_path / "data"))
  return [folders.load_group(g) for g in dataset.groups]


def test_views_count_labels_and_determinism(groups):
  config = views.ViewConfig(size=SIZE, crops=2, composites=1, seed=5)
  v = views.render(groups, config)
  plain = v.pasted == views.NONE
  assert plain.sum() == 9 * 4  # whole, mirrored, two crops per image
  assert (~plain).sum() == 9  # one composite per image (always placeable here)
  assert v.images.shape == (45, SIZE, SIZE, 3) and v.labels.shape == (45, SIZE, SIZE)
  assert set(np.unique(v.labels[plain])) <= {0, views.OWN}
  # Every plain view keeps at least a third of the object; a composite shows both objects,
  # the pasted one from another group and with that group's colour.
  assert all((v.labels[i] == views.OWN).any() for i in np.flatnonzero(plain))
  for i in np.flatnonzero(~plain):
    assert v.pasted[i] != v.own[i]
    assert (v.labels[i] == views.OWN).any() and (v.labels[i] == views.PASTED).any()
    colour = np.asarray(COLOURS[groups[v.pasted[i]]["name"]])
    pasted = v.images[i][v.labels[i] == views.PASTED].astype(int)
    assert np.abs(np.median(pasted, axis=0) - colour).max() < 10
  again = views.render(groups, config)
  np.testing.assert_array_equal(v.images, again.images)
  other = views.render(groups, views.ViewConfig(size=SIZE, crops=2, composites=1, seed=6))
  assert not np.array_equal(v.labels, other.labels)


def test_composites_need_two_groups(groups):
  with pytest.raises(ValueError, match="at least two groups"):
    views.render(groups[:1], views.ViewConfig(size=SIZE, composites=1))


def test_targets_keep_only_what_the_partner_shows():
  labels = np.array([[0, 1], [2, 2]], np.uint8)  # own object of group 0, pasted of group 1
  np.testing.assert_array_equal(views.targets(labels, 0, 1, 0, views.NONE), [[0, 1], [0, 0]])
  np.testing.assert_array_equal(views.targets(labels, 0, 1, 1, views.NONE), [[0, 0], [1, 1]])
  np.testing.assert_array_equal(views.targets(labels, 0, 1, 2, 0), [[0, 1], [0, 0]])
  np.testing.assert_array_equal(views.targets(labels, 0, 1, 1, 0), [[0, 1], [1, 1]])
  np.testing.assert_array_equal(views.targets(labels, 0, 1, 2, views.NONE), np.zeros((2, 2)))


def sampler(v, **kwargs):
  features = np.arange(len(v.labels), dtype=np.float16)[:, None, None, None] * np.ones(
      (1, 2, 2, 4), np.float16)
  return views.PairSampler(v, features, **{"batch_size": 8, "seed": 1, **kwargs})


def test_pairs_share_a_group_resume_and_shard(groups):
  v = views.render(groups, views.ViewConfig(size=SIZE, crops=1, composites=1))
  run = sampler(v)
  batches = [next(run) for _ in range(3)]
  for batch in batches:
    a = batch["features_a"][:, 0, 0, 0].astype(int)
    b = batch["features_b"][:, 0, 0, 0].astype(int)
    assert np.all(v.source[a] != v.source[b])  # two different images
    shared = [({v.own[i], v.pasted[i]} & {v.own[j], v.pasted[j]}) - {views.NONE}
              for i, j in zip(a, b)]
    assert all(shared)  # positives only: every pair has a group in common
    assert batch["mask_a"].shape == (8, SIZE, SIZE) and batch["mask_a"].max() == 1
  resumed = sampler(v)
  resumed.set_state(run.get_state())
  following = next(run)
  again = next(resumed)
  for key in following:
    np.testing.assert_array_equal(following[key], again[key])
  halves = [next(sampler(v, shard_index=k, shard_count=2)) for k in range(2)]
  whole = next(sampler(v))
  for key in whole:
    np.testing.assert_array_equal(np.concatenate([h[key] for h in halves]), whole[key])


def test_negative_pairs_have_empty_targets(groups):
  v = views.render(groups, views.ViewConfig(size=SIZE, crops=0, composites=0))
  batch = next(sampler(v, negatives=1.0, batch_size=16))
  a = batch["features_a"][:, 0, 0, 0].astype(int)
  b = batch["features_b"][:, 0, 0, 0].astype(int)
  assert np.all(v.own[a] != v.own[b])
  assert batch["mask_a"].max() == 0 and batch["mask_b"].max() == 0


def views_config(root, cache_dir, steps=2):
  config = recipe.add_config(tiny_config(steps))
  config.model.attention = "fca"
  config.data.dataset = "folder"
  config.data.root = str(root)
  config.data.views.enabled = True
  config.data.views.crops = 1
  config.data.views.composites = 1
  config.data.views.negatives = 0.25
  config.data.views.cache_dir = str(cache_dir)
  config.data.max_eval_pairs = 4
  config.train.freeze_encoder = True
  config.train.cache_features = True
  return config


@pytest.mark.slow
def test_view_features_are_cached_on_disk(tmp_path):
  root = write_folder_dataset(tmp_path / "data")
  config = views_config(root, tmp_path / "cache")
  model = train_lib.models.build(config.model)
  variables = jax.tree.map(np.asarray, train_lib.create_state(
      config, model, jax.random.key(0)).params)
  dataset = folders.scan(root)
  view_config = views.ViewConfig(size=64, crops=1, composites=1)
  built, features = view_cache.view_features(dataset, view_config, model,
                                                {"params": variables}, config.data.views.cache_dir)
  files = sorted((tmp_path / "cache").iterdir())
  assert len(files) == 1 and files[0].is_dir()  # no temporary folder left
  assert sorted(p.name for p in files[0].iterdir()) == [
      "features.npy", "labels.npy", "own.npy", "pasted.npy", "source.npy"]
  assert built.images is None and isinstance(features, row_files.RowFile)
  assert features.dtype == np.float16 and features.shape == (len(built.labels), 2, 2, 16)
  rendered = views.render([folders.load_group(g) for g in dataset.groups], view_config)
  np.testing.assert_array_equal(built.labels, rendered.labels)
  direct = feature_cache.encode_images(model, {"params": variables}, rendered.images[:3])
  np.testing.assert_array_equal(features[:3], direct)
  np.testing.assert_array_equal(features[[2, 0]], direct[[2, 0]])
  read, cached = view_cache.view_features(dataset, view_config, model, {"params": variables},
                                             config.data.views.cache_dir)
  assert read.images is None
  np.testing.assert_array_equal(cached, features)
  np.testing.assert_array_equal(read.labels, built.labels)
  assert sorted((tmp_path / "cache").iterdir()) == files  # read, not rebuilt
  other = views.ViewConfig(size=64, crops=0, composites=1)
  view_cache.view_features(dataset, other, model, {"params": variables},
                              config.data.views.cache_dir)
  assert len(list((tmp_path / "cache").iterdir())) == 2  # other views: another cache


def cache_setup(tmp_path):
  """(dataset, view config, model, variables, cache folder) of a small folder dataset."""
  root = write_folder_dataset(tmp_path / "data")
  config = views_config(root, tmp_path / "cache")
  model = train_lib.models.build(config.model)
  variables = {"params": train_lib.create_state(config, model, jax.random.key(0)).params}
  view_config = views.ViewConfig(size=64, crops=1, composites=1)
  return folders.scan(root), view_config, model, variables, config.data.views.cache_dir


@pytest.mark.slow
def test_a_cache_of_the_npz_version_is_rewritten_as_a_folder_not_encoded_again(tmp_path,
                                                                              monkeypatch):
  dataset, view_config, model, variables, cache = cache_setup(tmp_path)
  built, features = view_cache.view_features(dataset, view_config, model, variables, cache)
  folder = next((tmp_path / "cache").iterdir())
  np.savez(f"{folder}.npz", features=np.asarray(features), labels=np.asarray(built.labels),
           **{k: getattr(built, k) for k in ("source", "own", "pasted")})
  shutil.rmtree(folder)
  monkeypatch.setattr(view_cache, "encode_images", None)  # encoding would fail
  read, again = view_cache.view_features(dataset, view_config, model, variables, cache)
  assert [p.name for p in (tmp_path / "cache").iterdir()] == [folder.name]  # .npz removed
  np.testing.assert_array_equal(again, features)
  np.testing.assert_array_equal(read.labels, built.labels)


@pytest.mark.slow
def test_a_build_that_fails_midway_leaves_no_cache_and_the_next_run_builds_it(tmp_path,
                                                                              monkeypatch):
  dataset, view_config, model, variables, cache = cache_setup(tmp_path)
  encode = feature_cache.encode_images

  def full_disk_after_one_chunk(*args, out, **kwargs):
    def writers(rows):
      made = out(rows)
      made.write = functools.partial(_fail_second_write, made.write, [])
      return made
    return encode(*args, out=writers, chunk_size=2, **kwargs)
  monkeypatch.setattr(view_cache, "encode_images", full_disk_after_one_chunk)
  with pytest.raises(OSError, match="No space left"):
    view_cache.view_features(dataset, view_config, model, variables, cache)
  assert not list((tmp_path / "cache").iterdir())  # no partial folder
  monkeypatch.setattr(view_cache, "encode_images", encode)
  _, features = view_cache.view_features(dataset, view_config, model, variables, cache)
  assert len(list((tmp_path / "cache").iterdir())) == 1 and np.isfinite(features[:]).all()


@pytest.mark.slow
def test_the_views_are_streamed_through_the_encoder_not_held(tmp_path, monkeypatch):
  """While the cache is built, no more than a chunk of views is ever rendered ahead of the
  features written to disk (the first pass only counts them)."""
  dataset, view_config, model, variables, cache = cache_setup(tmp_path)
  written, ahead, passes = [0], [], []
  write = row_files.RowWriter.write

  def counted_write(self, rows):
    if self.path.endswith("features.npy"):
      written[0] += len(rows)
    write(self, rows)
  monkeypatch.setattr(row_files.RowWriter, "write", counted_write)

  def rows():
    passes.append(1)
    for k, row in enumerate(views.view_rows([folders.load_group(g) for g in dataset.groups],
                                            view_config)):
      if len(passes) == 2:
        ahead.append(k - written[0])
      yield row
  _, features = view_cache.cached_views(os.path.join(cache, "views-test"), rows, model,
                                        variables)
  assert len(passes) == 2 and len(ahead) == len(features) > 2 * feature_cache.ENCODE_CHUNK
  assert 0 <= max(ahead) <= feature_cache.ENCODE_CHUNK


def _fail_second_write(write, calls, rows):
  calls.append(rows)
  if len(calls) > 1:
    raise OSError(28, "No space left on device")
  write(rows)


def test_the_cache_key_follows_the_files_bytes_not_their_place_or_times(tmp_path):
  """A copy of the data elsewhere, with new times, finds the same cache; one changed byte
  of one mask does not."""
  root = write_folder_dataset(tmp_path / "data")
  config = views_config(root, tmp_path / "cache")
  model = train_lib.models.build(config.model)
  variables = {"params": train_lib.create_state(config, model, jax.random.key(0)).params}
  key = lambda r: view_cache.view_cache_path(folders.scan(r), {"size": 64}, model, variables)
  copy = shutil.copytree(root, tmp_path / "elsewhere" / "data", copy_function=shutil.copyfile)
  mask = copy / "masks" / "red" / "img_0.png"
  os.utime(mask, (1, 1))
  assert key(copy) == key(root)
  Image.fromarray(np.asarray(Image.open(mask)) ^ np.uint8(255)).save(mask)
  assert key(copy) != key(root)


@pytest.mark.slow
def test_skip_features_are_cached_apart_from_pool5_only_ones(tmp_path):
  root = write_folder_dataset(tmp_path / "data")
  config = views_config(root, tmp_path / "cache")
  dataset, view_config = folders.scan(root), views.ViewConfig(size=64, crops=1, composites=1)
  built = {}
  for skip in ("", "pool4", ""):
    config.model.skip = skip
    model = train_lib.models.build(config.model)
    variables = {"params": jax.tree.map(np.asarray, train_lib.create_state(
        config, model, jax.random.key(0)).params)}
    built[skip] = view_cache.view_features(dataset, view_config, model, variables,
                                              config.data.views.cache_dir)[1]
  assert len(list((tmp_path / "cache").iterdir())) == 2  # one each, read back the second time
  features = built["pool4"]
  assert sorted(features) == ["pool4", "pool5"] and features["pool4"].dtype == np.float16
  assert features["pool4"].shape == (len(features["pool5"]), 4, 4, 16)
  np.testing.assert_array_equal(features["pool5"], built[""])  # the same encoder
  again = view_cache.view_features(dataset, view_config, model.clone(skip="pool4"), variables,
                                      config.data.views.cache_dir)[1]
  jax.tree.map(np.testing.assert_array_equal, again, features)


@pytest.mark.slow
@pytest.mark.parametrize("skip", ["", "pool4", "pool3"])
def test_training_on_views_trains_the_decoder_only(tmp_path, skip):
  root = write_folder_dataset(tmp_path / "data")
  config = views_config(root, tmp_path / "cache")
  config.model.skip = skip
  initial = train_lib.create_state(config, train_lib.models.build(config.model),
                                   jax.random.key(config.seed)).params
  state = train_lib.train_and_evaluate(config, str(tmp_path / "run"))
  params = jax.tree.map(np.asarray, state.params)
  jax.tree.map(np.testing.assert_array_equal, params["encoder"], jax.device_get(initial["encoder"]))
  changed = lambda *path: np.abs(np.asarray(functools.reduce(dict.get, path, params))
                                 - functools.reduce(dict.get, path, initial)).max() > 0
  assert changed("decoder", "conv_0", "kernel")
  assert not skip or changed("decoder", "skip_conv", "kernel") and changed(
      "skip_attention", "kernel")
  assert skip != "pool3" or changed("decoder", "skip_conv_1", "kernel") and changed(
      "skip_attention_pool3", "kernel")
  assert len(list((tmp_path / "cache").iterdir())) == 1


def test_views_need_a_cached_frozen_encoder(tmp_path):
  config = views_config(tmp_path, tmp_path / "cache")
  config.train.cache_features = False
  with pytest.raises(ValueError, match=r"config\.data\.views\.enabled=True needs"):
    config_lib.validate(config)
