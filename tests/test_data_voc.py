"""VOC 2012 pairs on a miniature VOCdevkit written in the real format."""

import itertools
import json

import numpy as np
import pytest
from PIL import Image

from coseg_jax.data import images
from coseg_jax.data import pipeline
from coseg_jax.data import voc

TRAIN = {"2008_000001": (15,), "2008_000002": (12, 15), "2008_000003": (12,),
         "2008_000004": (1,), "2008_000005": (7, 15), "2008_000006": (3,)}
VAL = {f"2009_{i:06d}": classes for i, classes in enumerate(
    [(1,), (1, 2), (2,), (15,), (15, 20), (20,), (5,), (5, 15), (1, 20), (9,)])}


def voc_palette():
  """The standard PASCAL VOC colour map (bit-interleaved), 256 RGB entries."""
  palette = np.zeros((256, 3), np.uint8)
  for index in range(256):
    value, colour = index, [0, 0, 0]
    for shift in range(7, -1, -1):
      for channel in range(3):
        colour[channel] |= ((value >> channel) & 1) << shift
      value >>= 3
    palette[index] = colour
  return palette


def label_map(classes, height, width):
  """Background with one band per class, each outlined by a 1-pixel void (255) border."""
  labels = np.zeros((height, width), np.uint8)
  band = width // len(classes)
  for n, c in enumerate(classes):
    labels[2:-2, n * band + 1:(n + 1) * band - 1] = 255
    labels[3:-3, n * band + 2:(n + 1) * band - 2] = c
  return labels


def write_devkit(root):
  """A VOCdevkit/VOC2012 with TRAIN and VAL, in the real file formats."""
  base = root / "VOCdevkit" / "VOC2012"
  for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
    (base / folder).mkdir(parents=True)
  rng = np.random.default_rng(0)
  for n, (image_id, classes) in enumerate({**TRAIN, **VAL}.items()):
    height, width = (24, 32) if n % 2 else (30, 20)
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(
        base / "JPEGImages" / f"{image_id}.jpg")
    png = Image.fromarray(label_map(classes, height, width), "P")
    png.putpalette(voc_palette().ravel().tolist())
    png.save(base / "SegmentationClass" / f"{image_id}.png")
  (base / "ImageSets/Segmentation/train.txt").write_text("\n".join(TRAIN) + "\n")
  (base / "ImageSets/Segmentation/val.txt").write_text("\n".join(VAL) + "\n")
  return base


@pytest.fixture
def devkit(tmp_path):
  return write_devkit(tmp_path)


def expected_pairs(classes):
  ids = sorted(classes)
  return [(a, b) for a, b in itertools.combinations(ids, 2) if set(classes[a]) & set(classes[b])]


def test_root_may_be_any_level(devkit):
  for root in (devkit, devkit.parent, devkit.parent.parent):
    assert voc.find_root(root) == devkit


@pytest.mark.parametrize("missing", ["SegmentationClass", "ImageSets/Segmentation/val.txt"])
def test_incomplete_devkit_names_what_is_missing(devkit, missing):
  target = devkit / missing
  if target.is_dir():
    for f in target.iterdir():
      f.unlink()
    target.rmdir()
  else:
    target.unlink()
  with pytest.raises(images.MissingDataError, match=missing.split("/")[-1]) as error:
    voc.find_root(devkit.parent)
  assert "JPEGImages/<id>.jpg" in str(error.value)


def test_missing_jpeg_is_reported(devkit):
  (devkit / "JPEGImages" / "2008_000003.jpg").unlink()
  with pytest.raises(images.MissingDataError, match="2008_000003.jpg"):
    voc.load_pairs(devkit, "train")


def test_palette_pngs_are_read_as_class_indices(devkit):
  labels = voc.read_labels(devkit / "SegmentationClass" / "2008_000002.png")
  assert set(np.unique(labels)) == {0, 12, 15, 255}
  assert voc.image_classes(labels) == (12, 15)


def test_train_pairs_are_all_pairs_sharing_a_class(devkit):
  dataset = voc.load_pairs(devkit, "train")
  assert [dataset.names(i) for i in range(len(dataset))] == expected_pairs(TRAIN)
  assert dataset.index == {k: tuple(sorted(v)) for k, v in TRAIN.items()}


def test_val_test_split_halves_val_with_a_fixed_seed(devkit):
  val, test = voc.split_ids(devkit, "val"), voc.split_ids(devkit, "test")
  assert len(val) == len(VAL) // 2 and len(test) == len(VAL) - len(VAL) // 2
  assert sorted(val + test) == sorted(VAL)
  assert voc.split_ids(devkit, "val") == val
  assert voc.split_ids(devkit, "val", seed=1) != val
  for split, ids in (("val", val), ("test", test)):
    dataset = voc.load_pairs(devkit, split)
    assert [dataset.names(i) for i in range(len(dataset))] == expected_pairs(
        {k: VAL[k] for k in ids})


def test_masks_are_the_shared_classes_with_void_kept(devkit):
  dataset = voc.load_pairs(devkit, "train")
  k = [dataset.names(i) for i in range(len(dataset))].index(("2008_000002", "2008_000005"))
  sample = dataset[k]
  for side, image_id in (("a", "2008_000002"), ("b", "2008_000005")):
    labels = voc.read_labels(devkit / "SegmentationClass" / f"{image_id}.png")
    mask = sample[f"mask_{side}"]
    assert mask.dtype == np.uint8 and mask.shape == labels.shape
    np.testing.assert_array_equal(mask == 1, labels == 15)  # only the shared class
    np.testing.assert_array_equal(mask == voc.VOID, labels == 255)
    np.testing.assert_array_equal(mask == 0, ~np.isin(labels, [15, 255]))
    assert sample[f"image_{side}"].shape == labels.shape + (3,)
  assert (sample["mask_a"] == 0).sum() > (voc.read_labels(
      devkit / "SegmentationClass" / "2008_000002.png") == 0).sum()  # class 12 is background


def test_class_index_cache_is_written_and_reused(devkit, tmp_path):
  cache = tmp_path / "cache" / "classes.json"
  first = voc.class_index(devkit, sorted(TRAIN), cache)
  assert json.loads(cache.read_text())["classes"]["2008_000002"] == [12, 15]
  assert [p.name for p in cache.parent.iterdir()] == ["classes.json"]  # written atomically
  (devkit / "SegmentationClass" / "2008_000002.png").unlink()  # no longer needed
  assert voc.class_index(devkit, sorted(TRAIN), cache) == first


def test_pair_lists_round_trip_and_reject_bad_lines(devkit, tmp_path):
  counts = voc.export_pairs(devkit, tmp_path / "pairs")
  for split in voc.SPLITS:
    computed = voc.load_pairs(devkit, split)
    imported = voc.load_pairs(devkit, split, pairs_file=tmp_path / "pairs" / f"{split}.txt")
    assert counts[split] == len(computed)
    np.testing.assert_array_equal(imported.pairs, computed.pairs)
  bad = tmp_path / "bad.txt"
  for text, message in (("2008_000001 2008_999999\n", "2008_999999"),
                        ("2008_000001 2008_000003\n", "share no VOC class"),
                        ("2008_000001\n", "expected")):
    bad.write_text("# comment\n" + text)
    with pytest.raises(voc.PairListError, match=f"bad.txt:2: .*{message}"):
      voc.load_pairs(devkit, "train", pairs_file=bad)


def test_pipeline_batches_keep_void_through_resizing(devkit):
  config = {"dataset": "voc", "root": str(devkit.parent.parent), "image_size": 32,
            "num_threads": 1}
  batches = list(pipeline.build(config, split="test", batch_size=4, seed=0))
  source = voc.load_pairs(devkit, "test")
  valid = np.concatenate([b["valid"] for b in batches])
  assert valid.sum() == len(source)
  masks = np.concatenate([b["mask_a"] for b in batches])[valid]
  assert masks.shape[1:] == (32, 32) and set(np.unique(masks)) == {0, 1, 255}
  train = next(pipeline.build(config, split="train", batch_size=4, seed=0))
  assert train["image_a"].shape == (4, 32, 32, 3) and train["image_a"].dtype == np.uint8
