"""Resizing of images (bilinear) and masks (nearest neighbour) to the model's S x S input."""

import numpy as np
from PIL import Image


def resize_image(image, size):
  """uint8 [H, W, 3] -> uint8 [size, size, 3], bilinear."""
  if image.shape[:2] == (size, size):
    return image
  return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR))


def resize_mask(mask, size):
  """uint8 or bool [H, W] -> same dtype [size, size], nearest neighbour."""
  if mask.shape == (size, size):
    return mask
  resized = Image.fromarray(mask.astype(np.uint8)).resize((size, size), Image.Resampling.NEAREST)
  return np.asarray(resized).astype(mask.dtype)
