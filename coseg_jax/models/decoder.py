"""The paper's decoder (§3.5).

upsample -> conv(512,256) -> upsample -> conv(256,128) -> upsample -> conv(128,64)
-> upsample -> conv(64,32) -> upsample -> conv(32,2); every conv 3x3/1 with padding 1,
each but the last followed by ReLU, BatchNorm and dropout ("we ... add a dropout layer
after each layer", §3). No skip connections: un-attended features would let the
decoder segment every object and ignore the attention (§3).

A recipe option, not the paper: ``skips`` features (pool4 at the first block's output
size, pool3 at the second's, attended by ``CoSegNet``), each projected by a 1x1 conv
(+ ReLU, BatchNorm) to ``skip_width`` channels and concatenated to its block's output,
so the later blocks see detail finer than pool5 (docs/model.md).

Each "upsample -> conv 3x3" is computed as one 2x2 convolution of the small map
(``UpsampleConv``): the same values, without building the upsampled map and with 16
instead of 36 multiply-adds per input channel and output pixel (docs/performance.md).
"""

from functools import partial
from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from coseg_jax.errors import BadValue
from coseg_jax.models import conv
from coseg_jax.models.norm import BatchNorm

PAPER_DECODER_WIDTHS = (256, 128, 64, 32)


def upsample2x(x):
  """Nearest-neighbour x2 upsampling (torch ``nn.Upsample(scale_factor=2)``)."""
  b, h, w, c = x.shape
  x = jnp.broadcast_to(x[:, :, None, :, None, :], (b, h, 2, w, 2, c))
  return x.reshape(b, 2 * h, 2 * w, c)


def phase_kernels(kernel):
  """3x3 kernel [3, 3, I, O] -> the 2x2 kernels of the four output phases [2, 2, I, 4O].

  Output pixel (2i+a, 2j+b) of conv3x3(upsample2x(x)) reads input rows i-1, i (a = 0) or
  i, i+1 (a = 1): taps (k0, k1+k2) or (k0+k1, k2) of the kernel's rows; the same for
  columns and b. Phase (a, b) is output channel block 2a+b.
  """
  def taps(k, axis):
    k0, k1, k2 = jnp.split(k, 3, axis)
    return jnp.concatenate([k0, k1 + k2], axis), jnp.concatenate([k0 + k1, k2], axis)
  return jnp.concatenate([phase for rows in taps(kernel, 0) for phase in taps(rows, 1)], -1)


class UpsampleConv(nn.Module):
  """conv3x3(upsample2x(x)) with zero padding 1, as ``nn.Conv`` names its parameters
  (``kernel`` [3, 3, I, O], ``bias``), computed as one 2x2 convolution of the zero-padded
  ``x`` with ``phase_kernels`` whose four channel blocks interleave into the 2x output."""
  features: int
  dtype: jnp.dtype = jnp.float32
  ops: conv.Ops = conv.FAST

  @nn.compact
  def __call__(self, x):
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (3, 3, x.shape[-1], self.features))
    bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    b, h, w, _ = x.shape
    y = self.ops.conv_general_dilated(x, phase_kernels(kernel), (1, 1), ((1, 1), (1, 1)),
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))
    o = self.features
    rows = [jnp.stack([y[:, a:a + h, c:c + w, (2 * a + c) * o:(2 * a + c + 1) * o]
                       for c in (0, 1)], axis=3) for a in (0, 1)]
    return jnp.stack(rows, axis=2).reshape(b, 2 * h, 2 * w, o) + bias


class Decoder(nn.Module):
  """[B, h, w, C] attended features -> [B, 2^(n+1) h, 2^(n+1) w, num_classes] float32 logits."""
  widths: Sequence[int] = PAPER_DECODER_WIDTHS
  num_classes: int = 2
  dropout_rate: float = 0.2
  dtype: jnp.dtype = jnp.float32
  skip_width: int = 64
  ops: conv.Ops = conv.FAST

  @nn.compact
  def __call__(self, x, skips=(), train: bool = False):
    """``skips``: features [B, 2h, 2w, C'], [B, 4h, 4w, C''], ... joined after blocks 0, 1, ..."""
    if len(skips) > len(self.widths):
      raise BadValue(f"{len(skips)} skips for {len(self.widths)} decoder blocks")
    norm = partial(BatchNorm, use_running_average=not train, dtype=self.dtype)
    for i, width in enumerate(self.widths):
      x = UpsampleConv(width, dtype=self.dtype, ops=self.ops, name=f"conv_{i}")(x)
      x = norm(name=f"bn_{i}")(nn.relu(x))
      x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
      if i < len(skips):
        suffix = f"_{i}" if i else ""  # unsuffixed: the checkpoints of pool4-only models load
        s = nn.Conv(self.skip_width, (1, 1), dtype=self.dtype, name="skip_conv" + suffix)(skips[i])
        x = jnp.concatenate([x, norm(name="skip_bn" + suffix)(nn.relu(s))], axis=-1)
    x = UpsampleConv(self.num_classes, dtype=self.dtype, ops=self.ops,
                     name=f"conv_{len(self.widths)}")(x)
    return x.astype(jnp.float32)
