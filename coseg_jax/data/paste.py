"""Pasting one image's object into another: the composites of the real-photo recipe's
training views (``coseg_jax.proj.real_photos.views``) and of the distractor test
(``coseg_jax.evaluators.distractor``), made by the same function.

The donor's object (its mask's bounding box, masked) is resized so that its longer side
is a random 30–60 % of the base's side and put where at least half of the base's own
object stays visible. The result is the composite and a label map: 0 background,
``OWN`` the base image's object, ``PASTED`` the donor's.
"""

import numpy as np
from PIL import Image

OWN, PASTED = 1, 2  # label values
PASTE_SIDES = (0.3, 0.6)  # the pasted object's longer side, as a fraction of S
MIN_VISIBLE = 0.5  # a composite leaves this fraction of the own object visible
TRIES = 20  # places tried before giving up


def _box(mask):
  """(top, bottom, left, right) of a non-empty bool mask, bottom/right exclusive."""
  rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
  return rows[0], rows[-1] + 1, cols[0], cols[-1] + 1


def paste(base_image, base_mask, donor_image, donor_mask, rng):
  """Pastes the donor's object over an S x S base -> (image, labels) or None."""
  size = base_image.shape[0]
  top, bottom, left, right = _box(donor_mask)
  patch, patch_mask = donor_image[top:bottom, left:right], donor_mask[top:bottom, left:right]
  scale = rng.uniform(*PASTE_SIDES) * size / max(patch_mask.shape)
  h, w = (max(1, int(round(s * scale))) for s in patch_mask.shape)
  patch = _pil_resize(patch, (h, w))
  patch_mask = _pil_resize(patch_mask.astype(np.uint8), (h, w), nearest=True).astype(bool)
  own = base_mask.sum()
  for _ in range(TRIES):
    y, x = rng.integers(0, size - h + 1), rng.integers(0, size - w + 1)
    covered = np.zeros_like(base_mask)
    covered[y:y + h, x:x + w] = patch_mask
    if own and (base_mask & ~covered).sum() < MIN_VISIBLE * own:
      continue
    image = base_image.copy()
    image[covered] = patch[patch_mask]
    labels = np.where(covered, PASTED, np.where(base_mask, OWN, 0)).astype(np.uint8)
    return image, labels
  return None


def _pil_resize(array, hw, nearest=False):
  """uint8 [h, w(, 3)] -> [H, W(, 3)] = ``hw``, bilinear or nearest."""
  method = Image.Resampling.NEAREST if nearest else Image.Resampling.BILINEAR
  return np.asarray(Image.fromarray(np.ascontiguousarray(array)).resize(hw[::-1], method))
