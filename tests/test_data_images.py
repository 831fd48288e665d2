"""Image and mask decoding: PIL modes, bit depths, transparency, EXIF, broken files."""

import numpy as np
import pytest
from PIL import Image

from coseg_jax.data import images

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (6, 10, 3), dtype=np.uint8)
GREY = RNG.integers(0, 256, (6, 10), dtype=np.uint8)


def _save(img, path, **kwargs):
  img.save(path, **kwargs)
  return path


def _with_orientation(array, path, orientation):
  exif = Image.Exif()
  exif[0x0112] = orientation
  return _save(Image.fromarray(array), path, exif=exif)


@pytest.mark.parametrize("ext", ["png", "bmp", "tif"])
def test_rgb_lossless_formats_round_trip(tmp_path, ext):
  path = _save(Image.fromarray(RGB), tmp_path / f"x.{ext}")
  np.testing.assert_array_equal(images.read_image(path), RGB)


def test_jpeg_is_read_as_rgb_uint8(tmp_path):
  path = _save(Image.fromarray(RGB), tmp_path / "x.jpg", quality=100, subsampling=0)
  image = images.read_image(path)
  assert image.dtype == np.uint8 and image.shape == RGB.shape
  assert np.abs(image.astype(int) - RGB).mean() < 4


@pytest.mark.parametrize("mode", ["L", "1"])
def test_grey_and_bilevel_are_replicated_to_three_channels(tmp_path, mode):
  img = Image.fromarray(GREY).convert(mode)
  image = images.read_image(_save(img, tmp_path / "x.png"))
  expected = np.asarray(img.convert("L"))
  for channel in range(3):
    np.testing.assert_array_equal(image[..., channel], expected)


def test_palette_is_expanded(tmp_path):
  palette = RNG.integers(0, 256, (256, 3), dtype=np.uint8)
  indices = RNG.integers(0, 256, (6, 10), dtype=np.uint8)
  img = Image.fromarray(indices, "P")
  img.putpalette(palette.ravel().tolist())
  np.testing.assert_array_equal(images.read_image(_save(img, tmp_path / "x.png")), palette[indices])


def test_sixteen_bit_is_scaled_not_clipped(tmp_path):
  values = np.array([[0, 257 * 100, 65535, 32896]], np.uint16)
  image = images.read_image(_save(Image.fromarray(values), tmp_path / "x.png"))
  assert Image.open(tmp_path / "x.png").mode.startswith("I")
  np.testing.assert_array_equal(image[0, :, 0], [0, 100, 255, 128])


def test_int32_and_float_modes(tmp_path):
  ints = np.array([[0, 257 * 7, 65535]], np.int32)
  path = _save(Image.fromarray(ints, "I"), tmp_path / "i.tif")
  np.testing.assert_array_equal(images.read_image(path)[0, :, 1], [0, 7, 255])
  unit = np.array([[0.0, 0.5, 1.0]], np.float32)
  path = _save(Image.fromarray(unit, "F"), tmp_path / "f.tif")
  np.testing.assert_array_equal(images.read_image(path)[0, :, 2], [0, 128, 255])
  wide = np.array([[0.0, 100.0, 300.0]], np.float32)
  path = _save(Image.fromarray(wide, "F"), tmp_path / "g.tif")
  np.testing.assert_array_equal(images.read_image(path)[0, :, 0], [0, 100, 255])


def test_alpha_is_composited_over_white(tmp_path):
  rgba = np.zeros((1, 3, 4), np.uint8)
  rgba[0, :, :3] = [10, 20, 30]
  rgba[0, :, 3] = [255, 0, 128]
  image = images.read_image(_save(Image.fromarray(rgba, "RGBA"), tmp_path / "x.png"))
  np.testing.assert_array_equal(image[0, 0], [10, 20, 30])
  np.testing.assert_array_equal(image[0, 1], [255, 255, 255])
  expected = np.round(np.array([10, 20, 30]) * 128 / 255 + 255 * 127 / 255)
  np.testing.assert_array_equal(image[0, 2], expected)
  la = np.stack([GREY, np.zeros_like(GREY)], -1)
  assert (images.read_image(_save(Image.fromarray(la, "LA"), tmp_path / "la.png")) == 255).all()


def test_cmyk_is_converted(tmp_path):
  cmyk = Image.new("CMYK", (4, 3), (0, 255, 0, 0))
  image = images.read_image(_save(cmyk, tmp_path / "x.tif"))
  np.testing.assert_array_equal(image[0, 0], [255, 0, 255])
  jpeg = images.read_image(_save(cmyk, tmp_path / "x.jpg"))
  assert jpeg.shape == (3, 4, 3) and jpeg.dtype == np.uint8


@pytest.mark.parametrize("orientation,upright", [
    (1, lambda a: a),
    (2, np.fliplr),
    (3, lambda a: np.rot90(a, 2)),
    (4, np.flipud),
    (6, lambda a: np.rot90(a, -1)),
    (8, lambda a: np.rot90(a, 1)),
])
def test_exif_orientation_is_applied(tmp_path, orientation, upright):
  path = _with_orientation(RGB, tmp_path / "x.png", orientation)
  np.testing.assert_array_equal(images.read_image(path), upright(RGB))
  assert images.image_size(path) == upright(RGB).shape[:2]


def test_exif_orientation_is_applied_to_jpeg(tmp_path):
  blocks = np.zeros((32, 48, 3), np.uint8)
  blocks[:16, :16] = 255  # bright top-left corner
  image = images.read_image(_with_orientation(blocks, tmp_path / "x.jpg", 6))
  assert image.shape == (48, 32, 3)
  assert image[:16, -16:].mean() > 200 and image[-16:, :16].mean() < 50  # now top-right


@pytest.mark.parametrize("values,expected", [
    ([0, 255, 255, 0], [0, 1, 1, 0]),  # 0/255
    ([0, 1, 1, 0], [0, 1, 1, 0]),  # 0/1
    ([0, 100, 200, 255], [0, 0, 1, 1]),  # grey anti-aliased edges: > 127
    ([0, 127, 128, 255], [0, 0, 1, 1]),
    ([7, 7, 7, 7], [0, 0, 0, 0]),
    ([255, 255, 255, 255], [1, 1, 1, 1]),
])
@pytest.mark.parametrize("ext", ["png", "bmp"])
def test_grey_mask_thresholds(tmp_path, values, expected, ext):
  path = _save(Image.fromarray(np.array([values], np.uint8)), tmp_path / f"m.{ext}")
  mask = images.read_mask(path)
  assert mask.dtype == bool
  np.testing.assert_array_equal(mask[0], np.array(expected, bool))


def test_mask_formats_agree(tmp_path):
  fg = RNG.uniform(size=(6, 10)) > 0.5
  grey = fg.astype(np.uint8) * 255
  paths = [
      _save(Image.fromarray(fg), tmp_path / "bilevel.png"),
      _save(Image.fromarray(fg), tmp_path / "bilevel.bmp"),
      _save(Image.fromarray(np.repeat(grey[..., None], 3, -1)), tmp_path / "rgb.png"),
      _save(Image.fromarray(grey.astype(np.uint16) * 257), tmp_path / "sixteen.png"),
      _save(Image.fromarray(fg.astype(np.uint16) * 255), tmp_path / "sixteen_0_255.png"),
      _save(Image.fromarray(fg.astype(np.float32), "F"), tmp_path / "float.tif"),
      _save(Image.fromarray(np.dstack([grey, grey, grey, np.full_like(grey, 255)])),
            tmp_path / "rgba.png"),
  ]
  red = np.zeros((6, 10, 3), np.uint8)
  red[fg] = [200, 0, 0]
  paths.append(_save(Image.fromarray(red), tmp_path / "red.png"))
  palette = Image.fromarray(fg.astype(np.uint8), "P")
  palette.putpalette([0, 0, 0, 255, 255, 255])
  paths.append(_save(palette, tmp_path / "palette.png"))
  cutout = np.dstack([np.full_like(grey, 255)] * 3 + [grey])  # white, transparent background
  paths.append(_save(Image.fromarray(cutout, "RGBA"), tmp_path / "cutout.png"))
  for path in paths:
    np.testing.assert_array_equal(images.read_mask(path), fg, err_msg=str(path))


def test_mask_orientation_follows_the_image(tmp_path):
  mask = RNG.uniform(size=RGB.shape[:2]) > 0.5
  image_path = _with_orientation(RGB, tmp_path / "x.png", 6)
  stored = _save(Image.fromarray(mask), tmp_path / "stored.png")  # drawn on stored pixels
  upright = _save(Image.fromarray(np.rot90(mask, -1)), tmp_path / "upright.png")
  for mask_path in (stored, upright):
    image, fg = images.read_image_and_mask(image_path, mask_path)
    np.testing.assert_array_equal(image, np.rot90(RGB, -1))
    np.testing.assert_array_equal(fg, np.rot90(mask, -1))
    assert images.pair_sizes(image_path, mask_path) == (image.shape[:2], fg.shape)


def test_size_mismatch_names_both_files(tmp_path):
  image_path = _save(Image.fromarray(RGB), tmp_path / "img.png")
  mask_path = _save(Image.fromarray(GREY[:5]), tmp_path / "mask.png")
  with pytest.raises(images.MaskMismatchError, match=r"img\.png.*mask\.png"):
    images.read_image_and_mask(image_path, mask_path)


def test_truncated_and_garbage_files_name_the_file(tmp_path):
  good = _save(Image.fromarray(RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)),
               tmp_path / "good.jpg")
  truncated = tmp_path / "truncated.jpg"
  truncated.write_bytes(good.read_bytes()[:len(good.read_bytes()) // 2])
  with pytest.raises(images.ImageReadError, match="truncated.jpg"):
    images.read_image(truncated)
  with pytest.raises(images.ImageReadError, match="truncated.jpg"):
    images.read_mask(truncated)
  garbage = tmp_path / "garbage.png"
  garbage.write_bytes(b"not an image at all")
  with pytest.raises(images.ImageReadError, match="garbage.png"):
    images.read_image(garbage)
  with pytest.raises(images.MissingDataError, match="absent.png"):
    images.read_image(tmp_path / "absent.png")


def test_errors_have_builtin_bases():
  assert issubclass(images.ImageReadError, ValueError)
  assert issubclass(images.MaskMismatchError, ValueError)
  assert issubclass(images.MissingDataError, FileNotFoundError)
