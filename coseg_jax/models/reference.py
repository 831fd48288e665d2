"""The decoder of the authors' released PyTorch code (the "reference" architecture).

It differs from §3.5's decoder (``coseg_jax.models.decoder``): two residual blocks on
the attended pool5 features, then five times nearest x2 upsampling + conv5x5 halving
the channels (512 -> 256 -> ... -> 16), then a conv7x7 to the two classes. Every conv
reflect-pads its input to keep the size and has a bias; BatchNorm comes *before* the
ReLU; there is no dropout. Module names carry the indices of the released
``nn.Sequential`` (``res_j/block_k`` = ``dec.model.0.model.j.model.k``, ``block_i`` =
``dec.model.i``) so that its checkpoints map one to one (``coseg_jax.weights``).
"""

from functools import partial

import flax.linen as nn
import jax.numpy as jnp

from coseg_jax.errors import BadValue
from coseg_jax.models import conv
from coseg_jax.models.decoder import upsample2x
from coseg_jax.models.norm import BatchNorm


class ConvBlock(nn.Module):
  """Reflect-pad (k - 1) / 2 -> conv k x k (bias) [-> BatchNorm] [-> ReLU]."""
  features: int
  kernel_size: int
  norm: bool = True
  relu: bool = True
  dtype: jnp.dtype = jnp.float32
  ops: conv.Ops = conv.FAST

  @nn.compact
  def __call__(self, x, train: bool = False):
    pad = self.kernel_size // 2
    x = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
    x = nn.Conv(self.features, (self.kernel_size,) * 2, padding="VALID", dtype=self.dtype,
                conv_general_dilated=self.ops.conv_general_dilated, name="conv")(x)
    if self.norm:
      x = BatchNorm(use_running_average=not train, dtype=self.dtype, name="norm")(x)
    return nn.relu(x) if self.relu else x


class ResBlock(nn.Module):
  """x + [conv3x3 -> BatchNorm -> ReLU -> conv3x3 -> BatchNorm](x)."""
  dtype: jnp.dtype = jnp.float32
  ops: conv.Ops = conv.FAST

  @nn.compact
  def __call__(self, x, train: bool = False):
    block = partial(ConvBlock, x.shape[-1], 3, dtype=self.dtype, ops=self.ops)
    y = block(name="block_0")(x, train)
    return x + block(relu=False, name="block_1")(y, train)


class ReferenceDecoder(nn.Module):
  """[B, h, w, C] attended features -> [B, 2^n_up h, 2^n_up w, num_classes] float32 logits."""
  n_res: int = 2
  n_up: int = 5
  num_classes: int = 2
  dtype: jnp.dtype = jnp.float32
  ops: conv.Ops = conv.FAST

  @nn.compact
  def __call__(self, x, train: bool = False):
    if min(x.shape[1:3]) < 2:
      raise BadValue(f"the reference decoder reflect-pads its {x.shape[1]}x{x.shape[2]} input "
                     "by 1 and needs at least 2x2 features: images of at least 64x64")
    for j in range(self.n_res):
      x = ResBlock(dtype=self.dtype, ops=self.ops, name=f"res_{j}")(x, train)
    width = x.shape[-1]
    for i in range(self.n_up):
      width //= 2
      x = ConvBlock(width, 5, dtype=self.dtype, ops=self.ops,
                    name=f"block_{2 * i + 2}")(upsample2x(x), train)
    x = ConvBlock(self.num_classes, 7, norm=False, relu=False, dtype=self.dtype, ops=self.ops,
                  name=f"block_{2 * self.n_up + 1}")(x, train)
    return x.astype(jnp.float32)
