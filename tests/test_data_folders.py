"""Folder datasets: layouts, stem matching, mismatches, odd formats, real benchmark copies."""

import warnings

import numpy as np
import pytest
from PIL import Image

from coseg_jax.data import folders
from coseg_jax.data import images

RNG = np.random.default_rng(0)


def _image(path, height=12, width=16, mode="RGB"):
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(RNG.integers(0, 256, (height, width, 3), dtype=np.uint8)).convert(mode).save(path)
  return path


def _mask(path, height=12, width=16, kind="grey"):
  """A mask file whose foreground is the left half; returns the expected bool array."""
  path.parent.mkdir(parents=True, exist_ok=True)
  fg = np.zeros((height, width), bool)
  fg[:, :width // 2] = True
  grey = fg.astype(np.uint8) * 255
  if kind == "grey":
    Image.fromarray(grey).save(path)
  elif kind == "bilevel":
    Image.fromarray(fg).save(path)
  elif kind == "rgb":
    Image.fromarray(np.repeat(grey[..., None], 3, -1)).save(path)
  elif kind == "edges":  # anti-aliased boundary column of grey values
    edged = grey.copy()
    edged[:, width // 2 - 1] = 140
    edged[:, width // 2] = 110
    Image.fromarray(edged).save(path)
  return fg


def _separate(root):
  """images/<g>/ + masks/<g>/ with a different image and mask format per file."""
  expected = {}
  for group, files in {"Bird": [("a", ".jpg", "grey"), ("b", ".png", "bilevel"),
                                ("c", ".bmp", "edges")],
                       "Cow": [("x", ".jpg", "rgb"), ("y", ".jpeg", "grey")]}.items():
    for stem, ext, kind in files:
      _image(root / "images" / group / f"{stem}{ext}")
      mask_ext = ".bmp" if kind == "edges" else ".png"
      expected[(group, stem)] = _mask(root / "masks" / group / f"{stem}{mask_ext}", kind=kind)
  (root / "images" / "Bird" / "notes.txt").write_text("not an image")
  return expected


def test_separate_layout_is_detected_and_matched_by_stem(tmp_path):
  expected = _separate(tmp_path)
  dataset = folders.scan(tmp_path)
  assert dataset.layout == "separate" and dataset.has_masks and not dataset.skipped
  assert [g.name for g in dataset.groups] == ["Bird", "Cow"]
  for group in dataset.groups:
    loaded = folders.load_group(group)
    assert loaded["files"] == [p.name for p in group.images]
    for path, image, mask in zip(group.images, loaded["images"], loaded["masks"]):
      assert image.dtype == np.uint8 and image.shape == (12, 16, 3)
      np.testing.assert_array_equal(mask, expected[(group.name, path.stem)])


def test_groundtruth_layout_with_several_groups(tmp_path):
  for group in ("car", "horse"):
    for stem in ("0001", "0002", "0003"):
      _image(tmp_path / group / f"{stem}.jpg")
      _mask(tmp_path / group / "GroundTruth" / f"{stem}.png")
  dataset = folders.scan(tmp_path)
  assert dataset.layout == "groundtruth"
  assert [(g.name, len(g.images)) for g in dataset.groups] == [("car", 3), ("horse", 3)]
  assert all(m.parent.name == "GroundTruth" for g in dataset.groups for m in g.masks)


def test_plain_layout_has_no_masks(tmp_path):
  for stem in ("p", "q"):
    _image(tmp_path / "mine" / f"{stem}.png", mode="RGBA")
  dataset = folders.scan(tmp_path / "mine")
  assert dataset.layout == "plain" and not dataset.has_masks
  assert [g.name for g in dataset.groups] == ["mine"]
  loaded = folders.load_group(dataset.groups[0])
  assert loaded["masks"] is None and loaded["images"][0].shape == (12, 16, 3)
  pair = folders.FolderPairs.from_dataset(dataset)[0]
  assert (pair["mask_a"] == 255).all()


def test_layout_override(tmp_path):
  _separate(tmp_path)
  dataset = folders.scan(tmp_path / "images", layout="plain")
  assert [g.name for g in dataset.groups] == ["Bird", "Cow"] and not dataset.has_masks
  with pytest.raises(images.MissingDataError, match="images/ and a masks/"):
    folders.scan(tmp_path / "images", layout="separate")
  with pytest.raises(ValueError, match="unknown folder layout 'weird'"):
    folders.scan(tmp_path, layout="weird")


def test_group_restriction(tmp_path):
  _separate(tmp_path)
  assert [g.name for g in folders.scan(tmp_path, groups="Cow").groups] == ["Cow"]
  assert [g.name for g in folders.scan(tmp_path, groups=["Cow", "Bird"]).groups] == ["Bird", "Cow"]
  with pytest.raises(ValueError, match="unknown group.*Dog.*available groups: Bird, Cow"):
    folders.scan(tmp_path, groups="Cow,Dog")


@pytest.mark.parametrize("break_it,names", [
    (lambda root: (root / "masks" / "Cow" / "y.png").unlink(), ["y.jpeg", "y"]),
    (lambda root: (root / "images" / "Cow" / "x.jpg").unlink(), ["x.png"]),
    (lambda root: _mask(root / "masks" / "Cow" / "x.png", height=11), ["x.jpg", "x.png"]),
])
def test_mismatches_are_errors_or_skipped_and_counted(tmp_path, break_it, names):
  _separate(tmp_path)
  break_it(tmp_path)
  with pytest.raises(images.MaskMismatchError) as error:
    folders.scan(tmp_path)
  for name in names:
    assert name in str(error.value)
  with pytest.warns(UserWarning, match="left out 1 file"):
    dataset = folders.scan(tmp_path, on_mismatch="skip")
  assert len(dataset.skipped) == 1
  assert sum(len(g.images) for g in dataset.groups) == 4


def test_duplicate_stems_are_ambiguous(tmp_path):
  _separate(tmp_path)
  _image(tmp_path / "images" / "Cow" / "x.png")
  with pytest.raises(images.MaskMismatchError, match="x.jpg and x.png"):
    folders.scan(tmp_path)


def test_truncated_image_fails_naming_it(tmp_path):
  _separate(tmp_path)
  path = _image(tmp_path / "images" / "Cow" / "x.jpg", 64, 64)
  _mask(tmp_path / "masks" / "Cow" / "x.png", 64, 64)
  data = path.read_bytes()
  path.write_bytes(data[:len(data) // 2])  # header intact: found by scan, fails when decoded
  dataset = folders.scan(tmp_path, groups="Cow")
  with pytest.raises(images.ImageReadError, match="x.jpg"):
    folders.load_group(dataset.groups[0])
  path.write_bytes(data[:100])  # header cut: fails while scanning
  with pytest.raises(images.ImageReadError, match="x.jpg"):
    folders.scan(tmp_path, groups="Cow")


def test_pairs_are_all_unordered_pairs_within_groups(tmp_path):
  _separate(tmp_path)
  pairs = folders.FolderPairs.from_dataset(folders.scan(tmp_path))
  names = [pairs.names(k) for k in range(len(pairs))]
  assert names == [("Bird", "a.jpg", "b.png"), ("Bird", "a.jpg", "c.bmp"),
                   ("Bird", "b.png", "c.bmp"), ("Cow", "x.jpg", "y.jpeg")]
  sample = pairs[3]
  assert sample["mask_a"].dtype == np.uint8 and set(np.unique(sample["mask_a"])) == {0, 1}


def test_missing_root_and_empty_root(tmp_path):
  with pytest.raises(images.MissingDataError, match="does not exist"):
    folders.scan(tmp_path / "nowhere")
  (tmp_path / "empty").mkdir()
  with pytest.raises(images.MissingDataError, match="(?s)no images found.*separate"):
    folders.scan(tmp_path / "empty")


# Real benchmark copies (skipped without ../shared/data).

def test_real_pascal_voc10_coseg(data_dir):
  root = data_dir / "pascal_voc10_coseg"
  dataset = folders.scan(root)
  assert dataset.layout == "separate" and len(dataset.groups) == 10 and not dataset.skipped
  assert sum(len(g.images) for g in dataset.groups) == len(list((root / "images").glob("*/*.jpg")))
  with pytest.raises(ValueError, match="available groups: Aero, Bicycle"):
    folders.scan(root, groups="Dog")
  cow = folders.load_group(folders.scan(root, groups="Cow").groups[0])
  for image, mask in zip(cow["images"][:3], cow["masks"][:3]):
    assert image.shape[:2] == mask.shape and 0 < mask.mean() < 1


def test_real_msrc_cow_bmp_masks_with_grey_edges(data_dir):
  root = data_dir / "msrc_cow"
  dataset = folders.scan(root)
  assert dataset.layout == "groundtruth" and [g.name for g in dataset.groups] == ["msrc_cow"]
  group = dataset.groups[0]
  assert len(group.images) == 30
  raw = np.asarray(Image.open(group.masks[0]).convert("L"))
  mask = images.read_mask(group.masks[0])
  np.testing.assert_array_equal(mask, raw > 127)


def test_real_coco_demo_is_plain(data_dir):
  dataset = folders.scan(data_dir / "coco_group_demo")
  assert dataset.layout == "plain" and len(dataset.groups[0].images) == 8


def test_no_warnings_on_clean_real_data(data_dir):
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    folders.scan(data_dir / "pascal_voc10_coseg", groups="Cow,Bus")
