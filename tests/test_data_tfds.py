"""TFDS builders (the optional [tfds] extra): built datasets equal the folder and VOC readers."""

import sys

import numpy as np
from PIL import Image
import pytest

tfds = pytest.importorskip("tensorflow_datasets", reason="the [tfds] extra is not installed")
pytest.importorskip("array_record", reason="the [tfds] extra is not installed")

from coseg_jax import config as config_lib  # pylint: disable=g-import-not-at-top
from coseg_jax.data import folders  # pylint: disable=g-import-not-at-top
from coseg_jax.data import pipeline  # pylint: disable=g-import-not-at-top
from coseg_jax.data import resize  # pylint: disable=g-import-not-at-top
from coseg_jax.data import tfds_coseg  # pylint: disable=g-import-not-at-top
from coseg_jax.data import voc  # pylint: disable=g-import-not-at-top
from conftest import shared_data_dir  # pylint: disable=g-import-not-at-top
import test_data_voc  # pylint: disable=g-import-not-at-top

SIZE = 64


def _config(name, data_dir, **overrides):
  return {"dataset": "tfds", "tfds": {"name": name, "data_dir": str(data_dir)},
          "image_size": SIZE, "num_threads": 1, **overrides}


def _resized_pair(sample, size):
  return {k: (resize.resize_image(v, size) if k.startswith("image") else
              resize.resize_mask(v, size) if k.startswith("mask") else v)
          for k, v in sample.items()}


def _assert_sources_equal(ours, reference, size):
  assert len(ours) == len(reference) > 0
  for i in range(len(reference)):
    expected, got = _resized_pair(reference[i], size), ours[i]
    assert got.keys() == expected.keys()
    for key in expected:
      np.testing.assert_array_equal(got[key], expected[key], err_msg=f"pair {i} {key}")


@pytest.fixture(scope="module")
def voc_built(tmp_path_factory):
  root = tmp_path_factory.mktemp("voc")
  devkit = test_data_voc.write_devkit(root)
  data_dir = root / "tfds"
  name = tfds_coseg.build("voc2012_coseg", root / "VOCdevkit", data_dir, size=SIZE)
  return devkit, data_dir, name


def test_voc_builder_needs_no_tensorflow(voc_built):
  assert voc_built[2] == f"voc2012_coseg/{SIZE}"
  assert "tensorflow" not in sys.modules
  files = list((voc_built[1] / "voc2012_coseg" / str(SIZE)).rglob("*.array_record*"))
  assert len(files) == 3  # train, val, test


@pytest.mark.parametrize("split", voc.SPLITS)
def test_voc_pairs_images_and_masks_equal_the_voc_reader(voc_built, split):
  devkit, data_dir, name = voc_built
  config = config_lib.resolve_data(_config(name, data_dir))
  ours, reference = pipeline.pair_source(config, split), voc.load_pairs(devkit, split)
  assert [ours.names(i) for i in range(len(ours))] == [
      reference.names(i) for i in range(len(reference))]
  _assert_sources_equal(ours, reference, SIZE)
  records = tfds.data_source(name, data_dir=str(data_dir))[split]
  assert [r["id"].decode() for r in records] == list(reference.ids)  # stored in id order


def test_voc_pair_lists_and_split_seed(voc_built, tmp_path):
  devkit, data_dir, name = voc_built
  voc.export_pairs(devkit, tmp_path / "pairs")
  lines = (tmp_path / "pairs" / "train.txt").read_text().splitlines()
  (tmp_path / "pairs" / "train.txt").write_text("\n".join(lines[:3]) + "\n")
  pairs_dir = str(tmp_path / "pairs")
  config = config_lib.resolve_data(_config(name, data_dir, voc={"pairs_dir": pairs_dir}))
  assert len(pipeline.pair_source(config, "train")) == 2
  with pytest.raises(ValueError, match=r"voc\.split_seed=1"):
    pipeline.pair_source(_config(name, data_dir, voc={"split_seed": 1}), "train")
  with pytest.raises(ValueError, match="no groups"):
    next(pipeline.iterate_groups(_config(name, data_dir)))


def test_voc_batches_through_the_pipeline(voc_built):
  _, data_dir, name = voc_built
  batches = list(pipeline.build(_config(name, data_dir), split="test", batch_size=4, seed=0))
  masks = np.concatenate([b["mask_a"] for b in batches])[np.concatenate(
      [b["valid"] for b in batches])]
  assert masks.shape[1:] == (SIZE, SIZE) and set(np.unique(masks)) == {0, 1, 255}
  assert pipeline.dataset_kind(_config(name, data_dir)) == "voc"


def test_missing_dataset_is_one_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match=r"tfds\.name='voc2012_coseg/128'.*tfds_build"):
    pipeline.pair_source(_config("voc2012_coseg/128", tmp_path), "train")
  with pytest.raises(ValueError, match=r"tfds\.name is empty"):
    config_lib.resolve_data({"dataset": "tfds"})


def _folder_group(root, group, sizes):
  rng = np.random.default_rng(len(group))
  for n, (height, width) in enumerate(sizes):
    (root / "images" / group).mkdir(parents=True, exist_ok=True)
    (root / "masks" / group).mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(
        root / "images" / group / f"{n}.png")
    Image.fromarray((rng.uniform(size=(height, width)) > 0.5).astype(np.uint8) * 255).save(
        root / "masks" / group / f"{n}.png")


def test_mock_data_feeds_the_pipeline(tmp_path):
  """``tfds.testing.mock_data`` records (random, no files) become pairs with shared-class masks."""
  name = f"voc2012_coseg/{SIZE}"
  ids, classes = ["a", "b", "c", "d", "e"], [[1], [1, 2], [2], [3], [3, 4]]
  metadata = {"kind": "voc", "split_seed": 0, "train": {"ids": ids, "classes": classes}}

  def mocked_load(stored_name, data_dir):
    return tfds_coseg.Stored(stored_name, metadata, tfds.builder(stored_name, data_dir=data_dir))
  with tfds.testing.mock_data(num_examples=len(ids), policy=tfds.testing.MockPolicy.USE_CODE):
    with pytest.MonkeyPatch.context() as patch:
      patch.setattr(tfds_coseg, "load", mocked_load)
      source = pipeline.pair_source(_config(name, tmp_path), "train")
      assert [source.names(i) for i in range(len(source))] == [("a", "b"), ("b", "c"),
                                                               ("d", "e")]
      records = tfds.data_source(name, split="train", data_dir=str(tmp_path))
      for i, shared in enumerate(([1], [2], [3])):
        pair = source[i]
        a, b = source.pairs[i]
        for side, position in (("a", a), ("b", b)):
          labels = records[int(position)]["labels"]
          np.testing.assert_array_equal(pair[f"mask_{side}"] == 1, np.isin(labels, shared))
          np.testing.assert_array_equal(pair[f"mask_{side}"] == 255, labels == 255)
          np.testing.assert_array_equal(pair[f"image_{side}"], records[int(position)]["image"])
      batch = next(pipeline.build(_config(name, tmp_path), split="train", batch_size=2, seed=0))
      assert batch["image_a"].shape == (2, SIZE, SIZE, 3) and batch["image_a"].dtype == np.uint8


@pytest.fixture(scope="module")
def folder_built(tmp_path_factory):
  root = tmp_path_factory.mktemp("folder")
  _folder_group(root / "data", "g1", [(20, 30), (31, 17), (70, 64)])
  _folder_group(root / "data", "g2", [(40, 24), (24, 40)])
  name = tfds_coseg.build("coseg_folder", root / "data", root / "tfds", size=SIZE, name="mine")
  return root / "data", root / "tfds", name


def test_folder_builder_keeps_full_size_masks(folder_built):
  data, data_dir, name = folder_built
  assert name == f"coseg_folder/mine_{SIZE}"
  config = _config(name, data_dir)
  reference = folders.FolderPairs.from_dataset(folders.scan(data))
  _assert_sources_equal(pipeline.pair_source(config, "val"), reference, SIZE)
  ours = list(pipeline.iterate_groups(config))
  expected = [folders.load_group(g) for g in folders.scan(data).groups]
  assert [g["name"] for g in ours] == ["g1", "g2"]
  for got, want in zip(ours, expected):
    assert got["files"] == want["files"]
    for mask, full in zip(got["masks"], want["masks"]):
      np.testing.assert_array_equal(mask, full)
  assert pipeline.dataset_kind(config) == "folder"
  assert "tensorflow" not in sys.modules


@pytest.mark.slow
def test_eval_of_a_tfds_folder_equals_the_folder_and_saves_maps(folder_built, tmp_path):
  """evaluate.run on the built dataset: the folder reader's tables, maps at the files' size."""
  import test_evaluators as test_evaluate  # pylint: disable=g-import-not-at-top
  from coseg_jax.evaluators import evaluate, modes as modes_lib, report  # pylint: disable=g-import-not-at-top
  pytest.importorskip("py_sod_metrics", reason="the [sod] extra is not installed")
  data, data_dir, name = folder_built
  config = test_evaluate.tiny_config(dataset="tfds", tfds={"name": name, "data_dir": str(data_dir)})
  test_evaluate.save_random_run(tmp_path / "run", config)
  modes = ["group_mean", "center_box"]
  ours = evaluate.run(workdir=tmp_path / "run", modes=None, threshold="adaptive",
                      save_maps=tmp_path / "pred", method="rand")
  assert ours["modes"] == list(modes_lib.DEFAULT_GROUP_MODES) and ours["threshold"] == "adaptive"
  config.data.update(dataset="folder", root=str(data))
  reference = evaluate.run(workdir=tmp_path / "run", config=config, modes=modes,
                           threshold="adaptive")
  for mode in modes:
    assert ours["results"][mode]["classes"] == reference["results"][mode]["classes"]
  maps = tmp_path / "pred" / "rand_group_mean" / "coseg_folder_mine_64"
  assert ours["results"]["group_mean"]["sod"]["maps"] == str(maps)
  assert np.asarray(Image.open(maps / "g1" / "1.png")).shape == (31, 17)
  assert ours["results"]["center_box"]["sod"]["images"] == 5
  assert "s_measure" in report.format_report(ours)


@pytest.fixture(scope="module")
def real_built(tmp_path_factory):
  data = shared_data_dir()
  if data is None or not (data / "pascal_voc10_coseg").is_dir():
    pytest.skip("real pascal_voc10_coseg not found: set COSEG_DATA_DIR or use ../shared/data")
  data_dir = tmp_path_factory.mktemp("tfds_real")
  name = tfds_coseg.build("coseg_folder", data / "pascal_voc10_coseg", data_dir, size=SIZE,
                          name="pascal_voc10_coseg")
  return data / "pascal_voc10_coseg", data_dir, name


@pytest.mark.slow
def test_real_pascal_voc10_equals_the_folder_reader(real_built):
  root, data_dir, name = real_built
  config = config_lib.resolve_data(_config(name, data_dir))
  ours = pipeline.pair_source(config, "test")
  reference = folders.FolderPairs.from_dataset(folders.scan(root))
  assert [ours.names(i) for i in range(len(ours))] == [
      (f"{g}/{a}", f"{g}/{b}") for g, a, b in map(reference.names, range(len(reference)))]
  assert len(ours) == len(reference)
  for i in np.linspace(0, len(reference) - 1, 40).round().astype(int):
    expected, got = _resized_pair(reference[i], SIZE), ours[i]
    for key in ("image_a", "image_b", "mask_a", "mask_b", "index"):
      np.testing.assert_array_equal(got[key], expected[key], err_msg=f"pair {i} {key}")


@pytest.mark.slow
def test_real_groups_equal_the_folder_reader(real_built):
  root, data_dir, name = real_built
  config = _config(name, data_dir)
  reference = {g["name"]: g for g in pipeline.iterate_groups(
      {"dataset": "folder", "root": str(root), "image_size": SIZE})}
  ours = list(pipeline.iterate_groups(config))
  assert [g["name"] for g in ours] == list(reference) and len(ours) == 10
  for group in ours:
    want = reference[group["name"]]
    assert group["files"] == want["files"]
    np.testing.assert_array_equal(group["inputs"], want["inputs"])
    for mask, full in zip(group["masks"], want["masks"]):
      np.testing.assert_array_equal(mask, full)


@pytest.mark.slow
def test_trains_and_evaluates_from_the_voc_dataset(voc_built, tmp_path):
  """train.py's loop on dataset=tfds: trains, evaluates the val split, writes a checkpoint."""
  import test_evaluators as test_evaluate  # pylint: disable=g-import-not-at-top
  from coseg_jax.training import trainer as train_lib  # pylint: disable=g-import-not-at-top
  from coseg_jax.evaluators import evaluate, modes  # pylint: disable=g-import-not-at-top
  _, data_dir, name = voc_built
  config = test_evaluate.tiny_config(dataset="tfds", tfds={"name": name, "data_dir": str(data_dir)})
  train_lib.train_and_evaluate(config, str(tmp_path / "run"))
  report = evaluate.run(workdir=tmp_path / "run")
  assert report["dataset"] == f"voc2012_coseg_{SIZE}" and report["modes"] == list(
      modes.DEFAULTS["voc"])
  expected = 2 * len(voc.load_pairs(voc_built[0], "test"))
  assert report["results"]["pairs"]["images"] == expected


def test_build_errors_name_the_folder(tmp_path):
  (tmp_path / "empty").mkdir()
  for folder in ("missing", "empty"):
    with pytest.raises(FileNotFoundError, match=f"manual_dir .*{folder} is not a folder or is empty"):
      tfds_coseg.build("voc2012_coseg", tmp_path / folder, tmp_path / "tfds", size=SIZE)
  (tmp_path / "VOC2012" / "JPEGImages").mkdir(parents=True)
  with pytest.raises(FileNotFoundError, match="missing .*SegmentationClass"):
    tfds_coseg.build("voc2012_coseg", tmp_path, tmp_path / "tfds", size=SIZE)
  with pytest.raises(ValueError, match="needs a name"):
    tfds_coseg.build("coseg_folder", tmp_path, tmp_path / "tfds", size=SIZE)
