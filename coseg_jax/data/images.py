"""Reading image and mask files robustly: any PIL mode, EXIF orientation, bit depth.

Every reader returns plain numpy arrays:

* ``read_image``: uint8 RGB ``[H, W, 3]`` with the EXIF orientation applied. Grey,
  palette, CMYK and YCbCr images are converted to RGB; 16-bit images (``I;16``,
  ``I``) are scaled from 0..65535 to 0..255; float images (``F``) are read as
  0..1 when all values lie in [0, 1] and as 0..255 otherwise; transparent pixels
  (``LA``, ``RGBA``, ``PA``, palette or grey transparency) are composited over white.
* ``read_mask``: bool ``[H, W]``. Each pixel's value is its grey level, or for colour
  and palette masks its brightest channel (alpha composited over black, so
  transparent means background). A mask holding only 0 and one other value (0/1,
  0/255, 0/65535, 1-bit) has that value as foreground; any other mask is foreground
  above half its range (> 127 for 8-bit, so grey anti-aliased edges of 0/255 masks
  are split at the midpoint).
* ``read_image_and_mask``: both, brought to the same orientation, with a size check.

Unreadable or truncated files raise ``ImageReadError`` naming the file; a missing
file raises ``MissingDataError``.
"""

import pathlib

import numpy as np
from PIL import Image

from coseg_jax.errors import BadValue

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"})

_EXIF_ORIENTATION = 0x0112
# EXIF orientation -> the PIL transposition that shows the image upright.
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_WHITE = 255
_BLACK = 0


class MissingDataError(FileNotFoundError):
  """A file or folder that a dataset needs is not there."""


class ImageReadError(BadValue):
  """A file exists but cannot be decoded as an image (corrupt, truncated, odd mode)."""


class MaskMismatchError(BadValue):
  """An image and its mask do not belong together (missing partner, different size)."""


def is_image_file(path):
  """Whether ``path`` names a visible file with an image extension (case-insensitive)."""
  path = pathlib.Path(path)
  return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def _open(path):
  """Opens ``path`` lazily (header only); errors name the file."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise MissingDataError(f"{path}: no such image file")
  try:
    return Image.open(path)
  except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
    raise ImageReadError(f"{path}: cannot read as an image ({e})") from e


def _orientation(img):
  """The EXIF orientation tag (1..8) of an opened image; 1 when absent or invalid."""
  try:
    value = img.getexif().get(_EXIF_ORIENTATION, 1)
  except (OSError, SyntaxError, ValueError):  # A broken EXIF block: treat as upright.
    return 1
  return value if value in _TRANSPOSE else 1


def _oriented_size(img, orientation):
  """(width, height) of ``img`` once ``orientation`` is applied."""
  width, height = img.size
  return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def _decode(img, path, orientation):
  """Fully decodes ``img`` and applies ``orientation``; errors name ``path``."""
  try:
    img.load()
    return img.transpose(_TRANSPOSE[orientation]) if orientation != 1 else img
  except (OSError, SyntaxError, ValueError) as e:
    raise ImageReadError(f"{path}: cannot decode image data ({e})") from e


def _sixteen_to_eight(values):
  """Integer 0..65535 values -> uint8 0..255 (rounded, out-of-range clipped)."""
  values = np.clip(values.astype(np.int64), 0, 65535)
  return ((values + 128) // 257).astype(np.uint8)


def _float_to_eight(values):
  """Float values read as 0..1 when all lie in [0, 1], else as 0..255 -> uint8."""
  values = np.nan_to_num(values.astype(np.float32))
  if values.size and values.min() >= 0 and values.max() <= 1:
    values = values * 255
  return np.clip(np.round(values), 0, 255).astype(np.uint8)


def _rgb(img, path, background):
  """A decoded PIL image of any mode -> uint8 [H, W, 3], transparency over ``background``."""
  if img.mode in _SIXTEEN_BIT_MODES:
    grey = _sixteen_to_eight(np.asarray(img))
    return np.repeat(grey[..., None], 3, axis=-1)
  if img.mode == "F":
    return np.repeat(_float_to_eight(np.asarray(img))[..., None], 3, axis=-1)
  try:
    if img.has_transparency_data:
      rgba = np.asarray(img.convert("RGBA"), np.float32)
      alpha = rgba[..., 3:] / 255
      return np.round(rgba[..., :3] * alpha + background * (1 - alpha)).astype(np.uint8)
    return np.asarray(img.convert("RGB"))
  except (OSError, ValueError) as e:
    raise ImageReadError(f"{path}: cannot convert PIL mode {img.mode!r} to RGB ({e})") from e


def _mask_values(img, path):
  """Per-pixel mask values (any dtype) and the value that marks half their range."""
  if img.mode == "1":
    return np.asarray(img, np.uint8), 0
  if img.mode in _SIXTEEN_BIT_MODES:
    return np.asarray(img).astype(np.int64), 32767
  if img.mode == "F":
    values = np.nan_to_num(np.asarray(img, np.float32))
    return values, (0.5 if values.size and values.min() >= 0 and values.max() <= 1 else 127.5)
  if img.mode in ("L", "I;8") and not img.has_transparency_data:
    return np.asarray(img), 127
  return _rgb(img, path, _BLACK).max(axis=-1), 127


def _to_bool_mask(values, half):
  """Mask values -> bool: binary masks {0, v} by value, anything else above ``half``."""
  levels = np.unique(values)
  if len(levels) == 2 and levels[0] == 0:
    return values == levels[1]
  return values > half


def read_image(path):
  """Reads an image file -> uint8 RGB ``[H, W, 3]``, upright per its EXIF orientation."""
  img = _open(path)
  with img:
    return _rgb(_decode(img, path, _orientation(img)), path, _WHITE)


def read_mask(path):
  """Reads a mask file -> bool ``[H, W]`` (see the module docstring for the rules)."""
  img = _open(path)
  with img:
    return _to_bool_mask(*_mask_values(_decode(img, path, _orientation(img)), path))


def image_size(path):
  """(height, width) of an image as ``read_image`` returns it, reading the header only."""
  img = _open(path)
  with img:
    width, height = _oriented_size(img, _orientation(img))
  return height, width


def mask_orientation(image, mask):
  """The EXIF orientation to apply to ``mask`` so that it lines up with ``image``.

  A mask with its own orientation tag uses it. Otherwise the mask is taken to be
  drawn on the upright image, unless only the image's stored (unrotated) size fits
  it, as for a 90-degree EXIF rotation of a non-square photo whose mask was drawn
  on the stored pixels: then the image's orientation is applied to it as well.
  """
  own = _orientation(mask)
  if own != 1:
    return own
  image_orientation = _orientation(image)
  upright = _oriented_size(image, image_orientation)
  if mask.size != upright and mask.size == image.size:
    return image_orientation
  return 1


def check_sizes(image_path, image_hw, mask_path, mask_hw):
  """Raises ``MaskMismatchError`` naming both files if the two sizes differ."""
  if tuple(image_hw) != tuple(mask_hw):
    raise MaskMismatchError(
        f"image {image_path} is {image_hw[0]}x{image_hw[1]} (HxW) but its mask {mask_path} "
        f"is {mask_hw[0]}x{mask_hw[1]}; an image and its mask must have the same size")


def pair_sizes(image_path, mask_path):
  """Upright (height, width) of an image and of its mask, reading headers only."""
  with _open(image_path) as image, _open(mask_path) as mask:
    image_w, image_h = _oriented_size(image, _orientation(image))
    mask_w, mask_h = _oriented_size(mask, mask_orientation(image, mask))
  return (image_h, image_w), (mask_h, mask_w)


def read_image_and_mask(image_path, mask_path):
  """Reads an image and its mask in the same orientation -> (uint8 [H,W,3], bool [H,W]).

  Raises ``MaskMismatchError`` naming both files when their sizes differ.
  """
  with _open(image_path) as image, _open(mask_path) as mask:
    rgb = _rgb(_decode(image, image_path, _orientation(image)), image_path, _WHITE)
    fg = _to_bool_mask(*_mask_values(
        _decode(mask, mask_path, mask_orientation(image, mask)), mask_path))
  check_sizes(image_path, rgb.shape[:2], mask_path, fg.shape)
  return rgb, fg
