"""Convolution and 2x2 max-pooling with the values of lax/flax and faster CPU gradients.

A model is built from one ``Ops``: its ``conv_general_dilated`` and ``max_pool_2x2``. The
models take it as the module attribute ``ops`` (Flax's ``conv: ModuleDef`` style):

* ``FAST``, the default. Both operations are ``jax.custom_vjp`` functions: forward values
  are lax's and flax's; reverse mode (``jax.grad``, ``jax.vjp``, ``jax.jacrev``, also under
  ``jax.vmap`` and ``jax.jit``) runs the gradients below on the CPU and XLA's own on GPUs
  and TPUs (``lax.platform_dependent``). Any loss a user writes over ``model.apply`` gets
  them, not only the project's train step. A ``custom_vjp`` has no forward mode:
  ``jax.jvp``, ``jax.jacfwd`` and ``jax.hessian`` raise.
* ``XLA``: ``lax.conv_general_dilated`` and ``nn.max_pool``. Every transformation works,
  forward mode included; reverse mode is XLA's own (on the CPU about 3x slower for a
  train step: docs/performance.md). ``CoSegNet(..., ops=conv.XLA)`` or
  ``model.clone(ops=conv.XLA)``; variables are the same for both.

Why not one that does both: reverse mode through a ``custom_jvp`` can reach a custom
gradient only through ``linear_call``, which JAX does not batch (``jax.vmap``,
``jax.jacfwd``) and whose missing rules can be added only by writing JAX's private tables.

The CPU gradients:

* kernel gradient. XLA:CPU computes dL/dW of a stride-1 convolution as another
  convolution whose window is the whole feature map, 1.5–5x slower than the forward
  convolution on the 2-core AVX-512 CPU we measure on. Here it is a sum over the k*k
  kernel taps of one matmul each, dW[i, j] = sum_{b,h,w} x[b, h+i, w+j] g[b, h, w]
  (the operand with fewer elements is the one shifted), accumulated over bands of rows
  of one image at a time in a ``lax.scan`` so that the k*k matmuls of a band reuse
  operands in cache.
* input gradient: the transposed convolution (a convolution with the flipped kernel),
  the same operation XLA's own autodiff emits.
* max-pool gradient: flax/lax max-pooling differentiates through ``reduce_window``,
  which XLA:CPU lowers to a variadic reduce-window over index tensors (iota) and a
  scatter. Here the gradient goes to the first maximum of every 2x2 window in row-major
  order, the element ``select_and_scatter`` (and torch's MaxPool2d) picks, with
  elementwise operations only.

Anything other than an NHWC/HWIO 2-D convolution with unit strides and dilations, one
feature group and "VALID" or explicit padding of at most k - 1 falls back to
``lax.conv_general_dilated``; a max-pool of odd height or width to ``nn.max_pool``.
"""

import functools
from typing import Callable, NamedTuple

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp

_NHWC = ("NHWC", "HWIO", "NHWC")
# Elements of one operand's band of rows in kernel_gradient (1 MiB of float32, this CPU's L2
# per core). Bands of 100k–400k elements measured best, within ~10% of each other; whole
# images (0.4–3.2M elements) up to 1.3x slower, the whole batch at once up to 2.7x.
BLOCK_ELEMENTS = 2**18


def _is_nhwc(dimension_numbers, ndim):
  """True if ``dimension_numbers`` means NHWC input/output and an HWIO kernel."""
  if ndim != 4:
    return False
  if dimension_numbers is None:
    return False
  if isinstance(dimension_numbers, lax.ConvDimensionNumbers):
    return (tuple(dimension_numbers.lhs_spec) == (0, 3, 1, 2)
            and tuple(dimension_numbers.rhs_spec) == (3, 2, 0, 1)
            and tuple(dimension_numbers.out_spec) == (0, 3, 1, 2))
  return tuple(dimension_numbers) == _NHWC


def _unit(values):
  return values is None or all(v == 1 for v in values)


def _conv(x, w, padding):
  return lax.conv_general_dilated(x, w, (1, 1), padding, dimension_numbers=_NHWC)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv2d(x, w, padding):
  """Stride-1 NHWC x HWIO convolution with explicit ``padding`` ((top, bottom), (left, right))."""
  return _conv(x, w, padding)


def _conv2d_fwd(x, w, padding):
  return _conv(x, w, padding), (x, w)


def _conv2d_bwd(padding, residuals, g):
  """(dL/dx, dL/dw): the transposed convolution and, on the CPU, ``kernel_gradient``."""
  x, w = residuals
  dx = jax.linear_transpose(lambda x_: _conv(x_, w, padding), x)(g)[0]
  kernel_shape = w.shape[:2]

  def xla(x, g):
    return jax.linear_transpose(lambda w_: _conv(x, w_, padding), w)(g)[0]

  def cpu(x, g):
    return kernel_gradient(x, g, kernel_shape, padding).astype(w.dtype)
  return dx, lax.platform_dependent(x, g, cpu=cpu, default=xla)


conv2d.defvjp(_conv2d_fwd, _conv2d_bwd)


def block_rows(rows, width, channels, target=None):
  """Rows per block: the largest divisor of ``rows`` whose block of ``width * channels``
  elements per row stays within ``target`` elements (at least one row)."""
  target = BLOCK_ELEMENTS if target is None else target
  fitting = [r for r in range(1, rows + 1) if rows % r == 0 and r * width * channels <= target]
  return max(fitting, default=1)


def kernel_gradient(x, g, kernel_shape, padding, block_elements=None):
  """dL/dW [kh, kw, C, K] of ``_conv(x, w, padding)`` given g = dL/dy, as kh*kw matmuls.

  The taps are summed block by block (one image, a band of rows: ``block_rows``) in a
  ``lax.scan``, so that the k*k matmuls of a block reuse operands held in cache.
  """
  kh, kw = kernel_shape
  (pt, pb), (pl, pr) = padding
  batch, ho, wo, k_out = g.shape
  _, h, w, c_in = x.shape
  # accumulate bfloat16 in float32 (as XLA's convolutions do), float64 in float64
  acc_dtype = jnp.promote_types(x.dtype, jnp.float32)
  contract = functools.partial(jnp.einsum, "bhwc,bhwk->ck", preferred_element_type=acc_dtype)
  if x.size < g.size:
    # dW[i, j] = sum_{h,w} xp[h + i, w + j] g[h, w]: shift the (smaller) padded input,
    # in blocks of output rows
    rows = block_rows(ho, wo, max(c_in, k_out), block_elements)
    xp = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))

    def block_taps(b, r):
      xs = lax.dynamic_slice_in_dim(lax.dynamic_index_in_dim(xp, b, 0), r, rows + kh - 1, 1)
      gs = lax.dynamic_slice_in_dim(lax.dynamic_index_in_dim(g, b, 0), r, rows, 1)
      return [[contract(xs[:, i:i + rows, j:j + wo], gs) for j in range(kw)] for i in range(kh)]
    blocks = ho // rows
  else:
    # dW[i, j] = sum_{t,s} x[t, s] g[t + pt - i, s + pl - j] (g zero outside): shift g,
    # in blocks of input rows
    rows = block_rows(h, w, max(c_in, k_out), block_elements)
    lo_h, lo_w = kh - 1, kw - 1
    hi_h, hi_w = max(0, h + pt - ho), max(0, w + pl - wo)
    gp = jnp.pad(g, ((0, 0), (lo_h, hi_h), (lo_w, hi_w), (0, 0)))

    def block_taps(b, r):
      xs = lax.dynamic_slice_in_dim(lax.dynamic_index_in_dim(x, b, 0), r, rows, 1)
      gs = lax.dynamic_slice_in_dim(lax.dynamic_index_in_dim(gp, b, 0), r + pt, rows + kh - 1, 1)
      return [[contract(xs, gs[:, kh - 1 - i:kh - 1 - i + rows,
                                pl - j + lo_w:pl - j + lo_w + w]) for j in range(kw)]
              for i in range(kh)]
    blocks = h // rows

  def body(total, index):
    taps = block_taps(index // blocks, (index % blocks) * rows)
    return total + jnp.stack([jnp.stack(row) for row in taps]), None

  total = jnp.zeros((kh, kw, c_in, k_out), acc_dtype)
  return lax.scan(body, total, jnp.arange(batch * blocks))[0]


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                         batch_group_count=1, precision=None, preferred_element_type=None):
  """``lax.conv_general_dilated`` whose CPU kernel gradient is computed as matmuls (see above).

  The fast path covers 2-D NHWC/HWIO convolutions with unit strides and dilations, one
  group, default precision, "VALID" or explicit padding of at most k - 1 per side;
  anything else is passed through.
  """
  if isinstance(padding, str) and padding.upper() == "VALID":
    padding = ((0, 0),) * (lhs.ndim - 2)
  fast = (_is_nhwc(dimension_numbers, lhs.ndim)
          and _unit(window_strides) and _unit(lhs_dilation) and _unit(rhs_dilation)
          and feature_group_count == 1 and batch_group_count == 1 and preferred_element_type is None and precision is None
          and not isinstance(padding, str) and lhs.dtype == rhs.dtype)
  if fast:
    padding = tuple((int(lo), int(hi)) for lo, hi in padding)
    fast = all(0 <= p <= k - 1 for (lo, hi), k in zip(padding, rhs.shape[:2]) for p in (lo, hi))
  if not fast:
    return lax.conv_general_dilated(
        lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
        feature_group_count=feature_group_count, batch_group_count=batch_group_count,
        precision=precision, preferred_element_type=preferred_element_type)
  return conv2d(lhs, rhs, padding)


def _pool(x):
  b, h, w, c = x.shape
  return x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def flax_max_pool_2x2(x):
  """``nn.max_pool(x, (2, 2), strides=(2, 2))``: XLA's own gradient, every transformation."""
  return nn.max_pool(x, (2, 2), strides=(2, 2))


def max_pool_2x2(x):
  """``nn.max_pool(x, (2, 2), strides=(2, 2))`` of NHWC ``x``, with the CPU gradient above."""
  if x.ndim != 4 or x.shape[1] % 2 or x.shape[2] % 2:
    return flax_max_pool_2x2(x)
  return _max_pool_even(x)


@jax.custom_vjp
def _max_pool_even(x):
  return _pool(x)


def _max_pool_fwd(x):
  y = _pool(x)
  return y, (x, y)


def _max_pool_bwd(residuals, g):
  """dL/dx: g to each window's first maximum on the CPU; XLA's gradient elsewhere."""
  x, y = residuals

  def xla(x, y, g):
    del y
    return jax.vjp(flax_max_pool_2x2, x)[1](g)[0]
  return (lax.platform_dependent(x, y, g, cpu=_first_max_gradient, default=xla),)


_max_pool_even.defvjp(_max_pool_fwd, _max_pool_bwd)


def _first_max_masks(x, y):
  """Four bool [B, H/2, W/2, C] masks, one per position of the 2x2 window in row-major
  order: True where that position holds the window's first maximum (the element
  ``select_and_scatter``, and torch's MaxPool2d, pick)."""
  b, h, w, c = x.shape
  is_max = x.reshape(b, h // 2, 2, w // 2, 2, c) == y[:, :, None, :, None, :]
  e00, e01 = is_max[:, :, 0, :, 0], is_max[:, :, 0, :, 1]
  e10 = is_max[:, :, 1, :, 0]
  return e00, e01 & ~e00, e10 & ~(e00 | e01), ~(e00 | e01 | e10)


def _first_max_gradient(x, y, g):
  """dL/dx of 2x2 max-pooling with output y: g to the first maximum of each window,
  elementwise."""
  b, h, w, c = x.shape
  m00, m01, m10, m11 = _first_max_masks(x, y)
  zero = jnp.zeros_like(g)
  top = jnp.stack([jnp.where(m00, g, zero), jnp.where(m01, g, zero)], axis=3)
  bottom = jnp.stack([jnp.where(m10, g, zero), jnp.where(m11, g, zero)], axis=3)
  return jnp.stack([top, bottom], axis=2).reshape(b, h, w, c)


class Ops(NamedTuple):
  """The convolution (``lax.conv_general_dilated``'s signature) and the 2x2/2 max-pool a
  model is built from; the models' attribute ``ops``."""
  conv_general_dilated: Callable
  max_pool_2x2: Callable


FAST = Ops(conv_general_dilated, max_pool_2x2)
XLA = Ops(lax.conv_general_dilated, flax_max_pool_2x2)
