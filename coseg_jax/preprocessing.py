"""Input normalisation shared by the model, the data pipeline and the torch twin.

The encoder is torchvision's VGG16, so images enter the model normalised the
torchvision way: ``(rgb / 255 - mean) / std`` with the ImageNet statistics below.
Batches travel to the device as uint8 (a quarter of the float32 traffic); the jitted
steps normalise them there with ``model_input``.
"""

import numpy as np

from coseg_jax.errors import BadValue

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The values a normalised image can take: (0 - mean) / std .. (1 - mean) / std over channels.
NORMALISED_RANGE = (min((0 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)),
                    max((1 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)))


def preprocess(images):
  """uint8 RGB images ``[..., H, W, 3]`` -> float32 torchvision-normalised images.

  Works on numpy and jax arrays alike (returns the same kind). Raises if the last
  axis is not 3 (RGB) or the dtype is not uint8, since a float input would
  most likely be normalised already.
  """
  if images.shape[-1] != 3:
    raise BadValue(f"preprocess expects RGB images [..., H, W, 3], got shape {tuple(images.shape)}")
  if images.dtype != np.uint8:
    raise BadValue(f"preprocess expects uint8 images (0..255), got dtype {images.dtype}; "
                   "float images are assumed to be normalised already")
  mean = np.asarray(IMAGENET_MEAN, np.float32)
  std = np.asarray(IMAGENET_STD, np.float32)
  return (images.astype(np.float32) / 255.0 - mean) / std


def model_input(images):
  """Images as ``CoSegNet`` takes them, inside jit or out: uint8 RGB is normalised with
  ``preprocess``; float images are taken to be normalised already and pass unchanged."""
  return preprocess(images) if images.dtype == np.uint8 else images
