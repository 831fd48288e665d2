"""Pictures of segmentation results: pure image-array -> image-array functions, and ``save``.

Every function takes and returns numpy arrays (uint8 RGB ``[H, W, 3]`` unless stated)
and draws with PIL only.
"""

import math
import pathlib

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from coseg_jax.errors import BadValue

MASK_COLOUR = (40, 220, 40)  # green, like the paper's masks (Fig. 3)
BACKGROUND = (255, 255, 255)
CAPTION_HEIGHT = 14


def mask_image(mask):
  """bool [H, W] -> uint8 [H, W]: 255 foreground, 0 background."""
  return np.where(np.asarray(mask, bool), 255, 0).astype(np.uint8)


def probability_image(probs):
  """float P(foreground) [H, W] in [0, 1] -> uint8 [H, W] = round(255 p) (a soft map)."""
  return np.round(np.clip(np.asarray(probs, np.float32), 0, 1) * 255).astype(np.uint8)


def blend(image, colours, weight):
  """``image`` mixed with ``colours`` (uint8 or float [H, W, 3]) by ``weight`` [H, W] in [0, 1]."""
  weight = np.asarray(weight, np.float32)[..., None]
  mixed = image.astype(np.float32) * (1 - weight) + np.asarray(colours, np.float32) * weight
  return np.clip(np.round(mixed), 0, 255).astype(np.uint8)


def overlay(image, mask, colour=MASK_COLOUR, opacity=0.55):
  """The mask tinted over the image: foreground pixels mixed with ``colour``."""
  return blend(image, np.broadcast_to(np.asarray(colour, np.float32), image.shape),
               opacity * np.asarray(mask, np.float32))


def jet(values):
  """float [H, W] in [0, 1] -> uint8 [H, W, 3] colour map, blue (low) to red (high)."""
  x = np.clip(np.asarray(values, np.float32), 0, 1)[..., None]
  rgb = np.clip(1.5 - np.abs(4 * x - np.array([3.0, 2.0, 1.0], np.float32)), 0, 1)
  return np.round(255 * rgb).astype(np.uint8)


def stretch(values):
  """float [H, W] -> [0, 1] by min-max (all zeros when flat), so that a map's contrast shows."""
  values = np.asarray(values, np.float32)
  low, high = float(values.min()), float(values.max())
  return (values - low) / (high - low) if high > low else np.zeros_like(values)


def heatmap(image, heat, opacity=0.5):
  """A [0, 1] heat map ``[H, W]`` (the image's size) coloured blue-to-red over the image."""
  heat = np.asarray(heat, np.float32)
  if heat.shape != image.shape[:2]:
    raise BadValue(f"heat map {heat.shape} must have the image's size {image.shape[:2]}")
  return blend(image, jet(heat), np.full(heat.shape, opacity, np.float32))


def thumbnail(image, size):
  """The image shrunk (never enlarged) to fit ``size`` x ``size``, aspect ratio kept."""
  img = Image.fromarray(image)
  img.thumbnail((size, size), Image.Resampling.BILINEAR)
  return np.asarray(img)


def contact_sheet(images, captions, cell=160, columns=None):
  """Images as thumbnails in a grid, each captioned below -> one uint8 [H, W, 3] image.

  ``columns`` defaults to about the square root of the count.
  """
  if len(images) != len(captions) or not images:
    raise BadValue(f"contact_sheet needs one caption per image and at least one image, got "
                   f"{len(images)} images and {len(captions)} captions")
  columns = columns or math.ceil(math.sqrt(len(images)))
  rows = math.ceil(len(images) / columns)
  height = cell + CAPTION_HEIGHT
  sheet = Image.new("RGB", (columns * cell, rows * height), BACKGROUND)
  draw = ImageDraw.Draw(sheet)
  font = ImageFont.load_default()
  for n, (image, caption) in enumerate(zip(images, captions)):
    small = thumbnail(image, cell)
    x, y = (n % columns) * cell, (n // columns) * height
    sheet.paste(Image.fromarray(small), (x + (cell - small.shape[1]) // 2,
                                         y + (cell - small.shape[0]) // 2))
    draw.text((x + 2, y + cell), _fit(draw, caption, font, cell - 4), fill=(0, 0, 0), font=font)
  return np.asarray(sheet)


def _fit(draw, text, font, width):
  """``text``, cut and ended with "..." if it is wider than ``width`` pixels."""
  if draw.textlength(text, font=font) <= width:
    return text
  while len(text) > 1 and draw.textlength(text + "...", font=font) > width:
    text = text[:-1]
  return text + "..."


def save(path, image):
  """Writes a uint8 image array ([H, W] grey or [H, W, 3] RGB) to ``path``; returns the path."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(np.asarray(image)).save(path)
  return path
