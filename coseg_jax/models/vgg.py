"""VGG16 convolutional encoder (paper §3: "identical with the convolutional layers of VGG16").

Layer names mirror torchvision's ``vgg16().features`` indices, so that the torchvision
state_dict key ``features.N.weight`` maps to the flax parameter ``features_N/kernel``.
"""

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

# torchvision vgg16 "D" configuration: channel widths, "M" = 2x2/2 max-pool.
VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
                512, 512, 512, "M")
VGG16_WIDTHS = (64, 128, 256, 512, 512)


def conv_indices():
  """torchvision ``features`` indices of the 13 convolutions: 0, 2, 5, ..., 28."""
  indices, index = [], 0
  for item in VGG16_LAYOUT:
    if item == "M":
      index += 1
    else:
      indices.append(index)
      index += 2  # conv, ReLU
  return tuple(indices)


def conv_channels(widths: Sequence[int] = VGG16_WIDTHS):
  """Output channels of the 13 convolutions for per-stage ``widths``."""
  stage, channels = 0, []
  for item in VGG16_LAYOUT:
    if item == "M":
      stage += 1
    else:
      channels.append(widths[stage])
  return tuple(channels)


class VGG16Encoder(nn.Module):
  """13 conv3x3 (padding 1) + ReLU and 5 max-pools: [B,H,W,3] -> [B,H/32,W/32,widths[-1]].

  ``widths`` defaults to VGG16; smaller widths give the documented demo preset
  (same depth and strides, fewer channels), which cannot load torchvision weights.
  """
  widths: Sequence[int] = VGG16_WIDTHS
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    channels = iter(conv_channels(self.widths))
    index = 0
    for item in VGG16_LAYOUT:
      if item == "M":
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
        index += 1
      else:
        x = nn.Conv(next(channels), (3, 3), padding=((1, 1), (1, 1)), dtype=self.dtype,
                    name=f"features_{index}")(x)
        x = nn.relu(x)
        index += 2
    return x
