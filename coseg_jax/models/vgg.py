"""VGG16 convolutional encoder (paper §3: "identical with the convolutional layers of VGG16").

Layer names mirror torchvision's ``vgg16().features`` indices, so that the torchvision
state_dict key ``features.N.weight`` maps to the flax parameter ``features_N/kernel``.

The default is VGG16 exactly. ``convs_per_stage`` and ``batch_norm`` give lighter
VGG-style encoders with the same five stages and stride 32 (the demo preset trains one
from scratch on a CPU); with ``batch_norm`` the names follow torchvision's ``vgg*_bn``
(conv at N, BatchNorm at N+1). Only the default loads torchvision VGG16 weights.
"""

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from coseg_jax.errors import BadValue
from coseg_jax.models import conv
from coseg_jax.models.norm import BatchNorm

VGG16_WIDTHS = (64, 128, 256, 512, 512)
VGG16_CONVS = (2, 2, 3, 3, 3)
# torchvision's vgg16 "D" configuration: channel widths, "M" = 2x2/2 max-pool.
VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
                512, 512, 512, "M")


def layer_indices(convs_per_stage=VGG16_CONVS, batch_norm=False):
  """torchvision ``features`` indices of every conv, stage by stage: VGG16 -> 0, 2, 5, ..., 28."""
  step = 3 if batch_norm else 2  # conv, (BatchNorm,) ReLU
  stages, index = [], 0
  for convs in convs_per_stage:
    stages.append(tuple(range(index, index + step * convs, step)))
    index += step * convs + 1  # + max-pool
  return stages


def conv_indices(convs_per_stage=VGG16_CONVS, batch_norm=False):
  """The flat tuple of ``layer_indices``."""
  return tuple(i for stage in layer_indices(convs_per_stage, batch_norm) for i in stage)


def conv_channels(widths: Sequence[int] = VGG16_WIDTHS, convs_per_stage=VGG16_CONVS):
  """Output channels of every conv for per-stage ``widths``."""
  return tuple(w for w, convs in zip(widths, convs_per_stage) for _ in range(convs))


class VGG16Encoder(nn.Module):
  """conv3x3 (padding 1) + ReLU stages, each ending in a 2x2/2 max-pool.

  [B, H, W, 3] -> pool5 [B, H/32, W/32, widths[-1]]; with ``taps`` (names of earlier
  stages' outputs, e.g. ``("pool4",)``) a dict ``{"pool5": ..., "pool4": ...}``.
  """
  widths: Sequence[int] = VGG16_WIDTHS
  convs_per_stage: Sequence[int] = VGG16_CONVS
  batch_norm: bool = False
  dtype: jnp.dtype = jnp.float32
  taps: Sequence[str] = ()
  ops: conv.Ops = conv.FAST

  @nn.compact
  def __call__(self, x, train: bool = False):
    if len(self.widths) != 5 or len(self.convs_per_stage) != 5:
      raise BadValue(f"the encoder has 5 stages: got widths {tuple(self.widths)} and "
                     f"convs_per_stage {tuple(self.convs_per_stage)}")
    stages = layer_indices(self.convs_per_stage, self.batch_norm)
    pooled = {}
    for stage, (width, indices) in enumerate(zip(self.widths, stages), 1):
      for index in indices:
        x = nn.Conv(width, (3, 3), padding=((1, 1), (1, 1)), dtype=self.dtype,
                    conv_general_dilated=self.ops.conv_general_dilated,
                    name=f"features_{index}")(x)
        if self.batch_norm:
          x = BatchNorm(use_running_average=not train, dtype=self.dtype,
                        name=f"features_{index + 1}")(x)
        x = nn.relu(x)
      x = self.ops.max_pool_2x2(x)
      pooled[f"pool{stage}"] = x
    if not self.taps:
      return x
    return {"pool5": x, **{name: pooled[name] for name in self.taps}}
