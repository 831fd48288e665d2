"""The paper's decoder (§3.5).

upsample -> conv(512,256) -> upsample -> conv(256,128) -> upsample -> conv(128,64)
-> upsample -> conv(64,32) -> upsample -> conv(32,2); every conv 3x3/1 with padding 1,
each but the last followed by ReLU, BatchNorm and dropout ("we ... add a dropout layer
after each layer", §3). No skip connections: un-attended features would let the
decoder segment every object and ignore the attention (§3).
"""

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from coseg_jax.models.conv import conv_general_dilated
from coseg_jax.models.norm import BatchNorm

PAPER_DECODER_WIDTHS = (256, 128, 64, 32)


def upsample2x(x):
  """Nearest-neighbour x2 upsampling (torch ``nn.Upsample(scale_factor=2)``)."""
  b, h, w, c = x.shape
  x = jnp.broadcast_to(x[:, :, None, :, None, :], (b, h, 2, w, 2, c))
  return x.reshape(b, 2 * h, 2 * w, c)


class Decoder(nn.Module):
  """[B, h, w, C] attended features -> [B, 2^(n+1) h, 2^(n+1) w, num_classes] float32 logits."""
  widths: Sequence[int] = PAPER_DECODER_WIDTHS
  num_classes: int = 2
  dropout_rate: float = 0.2
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    for i, width in enumerate(self.widths):
      x = upsample2x(x)
      x = nn.Conv(width, (3, 3), padding=((1, 1), (1, 1)), dtype=self.dtype,
                  conv_general_dilated=conv_general_dilated, name=f"conv_{i}")(x)
      x = nn.relu(x)
      x = BatchNorm(use_running_average=not train, dtype=self.dtype, name=f"bn_{i}")(x)
      x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    x = upsample2x(x)
    x = nn.Conv(self.num_classes, (3, 3), padding=((1, 1), (1, 1)), dtype=self.dtype,
                conv_general_dilated=conv_general_dilated, name=f"conv_{len(self.widths)}")(x)
    return x.astype(jnp.float32)
