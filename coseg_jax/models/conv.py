"""Convolution and 2x2 max-pooling with the same values as lax/flax, and faster CPU gradients.

Both are drop-in: ``nn.Conv(..., conv_general_dilated=conv_general_dilated)`` and
``max_pool_2x2(x)`` for ``nn.max_pool(x, (2, 2), strides=(2, 2))``. By default they *are*
the lax/flax operations. Traced inside ``fast_gradients()`` (the train step of
``training.trainer`` is) they give the same values and gradients; only the backward pass
differs, and only in how it is computed (docs/performance.md has the measurements). Both
backward rewrites apply on the CPU only (``lax.platform_dependent``); on GPUs and TPUs
the gradients are XLA's own.

* kernel gradient. XLA:CPU computes dL/dW of a stride-1 convolution as another
  convolution whose window is the whole feature map, 1.5–5x slower than the forward
  convolution on the 2-core AVX-512 CPU we measure on. Here it is a sum over the k*k
  kernel taps of one matmul each, dW[i, j] = sum_{b,h,w} x[b, h+i, w+j] g[b, h, w]
  (the operand with fewer elements is the one shifted), accumulated over bands of rows
  of one image at a time in a ``lax.scan`` so that the k*k matmuls of a band reuse
  operands in cache: 1.3–5x faster than XLA's, on par with oneDNN's (PyTorch).
* input gradient: the transposed convolution (a convolution with the flipped kernel),
  the same operation XLA's own autodiff emits.
* max-pool gradient: flax/lax max-pooling differentiates through ``reduce_window``,
  which XLA:CPU lowers to a variadic reduce-window over index tensors (iota) and a
  scatter. Here the gradient goes to the first maximum of every 2x2 window in row-major
  order, the element ``select_and_scatter`` (and torch's MaxPool2d) picks, with
  elementwise operations only.

Forward and reverse mode. Inside ``fast_gradients()`` both operations are
``jax.custom_jvp`` functions whose tangent is linear in the input tangents; the parts with
a fast gradient are ``linear_call``s whose declared transpose is that gradient. Forward
mode (``jax.jvp``, ``jax.linearize``, ``jax.jacfwd``) evaluates the tangents (XLA
convolutions, elementwise selects); reverse mode transposes them and so runs the fast
gradients above, compiled to the same program as a ``custom_vjp`` would give.
Second-order derivatives (``jax.hessian``, grad of grad) differentiate the fast gradients
once more. Two of these need rules JAX lacks: a batching rule for ``linear_call``
(``jax.jacfwd``, ``jax.vmap``) and a JVP for tangents of its non-linear operands
(``_jvp_linear_call``). ``fast_gradients()`` puts them in JAX's tables while it is active
and puts the previous entries back when it exits; importing this module changes nothing
in JAX (``tests/test_import_state.py``).

Anything other than an NHWC/HWIO 2-D convolution with unit strides and dilations, one
feature group and "VALID" or explicit padding of at most k - 1 falls back to
``lax.conv_general_dilated``.
"""

import contextlib
import contextvars
import functools
import threading

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp
from jax._src import custom_derivatives  # linear_call_p, for fast_gradients()' rules
from jax.custom_derivatives import SymbolicZero, linear_call
from jax.extend.core import jaxpr_as_fun
from jax.interpreters import ad, batching

_NHWC = ("NHWC", "HWIO", "NHWC")
# Elements of one operand's band of rows in kernel_gradient (1 MiB of float32, this CPU's L2
# per core). Bands of 100k–400k elements measured best, within ~10% of each other; whole
# images (0.4–3.2M elements) up to 1.3x slower, the whole batch at once up to 2.7x.
BLOCK_ELEMENTS = 2**18
_LINEAR_CALL = custom_derivatives.linear_call_p


_FAST = contextvars.ContextVar("fast_gradients", default=False)
_ABSENT = object()
_RULES_LOCK = threading.Lock()
_rules = {"depth": 0, "saved": []}  # the entries fast_gradients() replaced, to restore


@contextlib.contextmanager
def fast_gradients():
  """Within it, ``conv_general_dilated`` and ``max_pool_2x2`` trace the fast CPU gradients.

  Outside it they are ``lax.conv_general_dilated`` and ``nn.max_pool`` (XLA's own
  gradients). What counts is where a function is traced: enter it inside the function
  given to ``jax.jit`` (``training.trainer.train_step`` does), or around its first call; jit
  caches a trace by function and argument types, not by this context.

  While at least one is active (re-entrant, counted), two ``linear_call`` rules are in
  JAX's tables: a batching rule (``jax.vmap``, ``jax.jacfwd``) and a JVP that also takes
  tangents of the non-linear operands (second-order derivatives); the entries they
  replaced are put back when the outermost one exits. The rules are used while tracing
  only, so restoring them is safe for programs already traced, but transformations
  applied later to such a program (``jax.vmap`` or a second derivative of a jitted train
  step) must run inside it too. The tables are global: another thread tracing at the
  same time sees the rules as well.
  """
  _install_rules()
  token = _FAST.set(True)
  try:
    yield
  finally:
    _FAST.reset(token)
    _restore_rules()


def _install_rules():
  """Puts the ``linear_call`` rules in JAX's tables (the batching rule only where JAX has none)."""
  with _RULES_LOCK:
    _rules["depth"] += 1
    if _rules["depth"] > 1:
      return
    tables = [(ad.primitive_jvps, _jvp_linear_call)]
    if _LINEAR_CALL not in batching.fancy_primitive_batchers:
      tables.append((batching.fancy_primitive_batchers, _batch_linear_call))
    _rules["saved"] = [(table, table.get(_LINEAR_CALL, _ABSENT), rule) for table, rule in tables]
    for table, _, rule in _rules["saved"]:
      table[_LINEAR_CALL] = rule


def _restore_rules():
  """Puts back the entries ``_install_rules`` replaced, once the outermost context exits;
  an entry someone else replaced meanwhile is left as it is."""
  with _RULES_LOCK:
    _rules["depth"] -= 1
    if _rules["depth"]:
      return
    for table, previous, rule in _rules["saved"]:
      if table.get(_LINEAR_CALL) is not rule:
        continue
      if previous is _ABSENT:
        del table[_LINEAR_CALL]
      else:
        table[_LINEAR_CALL] = previous
    _rules["saved"] = []


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


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def conv2d(x, w, padding):
  """Stride-1 NHWC x HWIO convolution with explicit ``padding`` ((top, bottom), (left, right))."""
  return _conv(x, w, padding)


def _conv2d_jvp(padding, primals, tangents):
  """dy = conv(dx, w) + conv(x, dw), both linear in the tangents. The first term is lax's
  (its transpose, the input gradient, is the transposed convolution XLA's autodiff emits);
  the second is a ``linear_call`` whose transpose is ``kernel_gradient`` on the CPU, so
  reverse mode, which transposes the tangent map, reaches the fast kernel gradient."""
  x, w = primals
  dx, dw = tangents
  y = _conv(x, w, padding)
  terms = []
  if not isinstance(dx, SymbolicZero):
    terms.append(_conv(dx, w, padding))
  if not isinstance(dw, SymbolicZero):
    terms.append(linear_call(functools.partial(_conv, padding=padding),
                             functools.partial(_kernel_gradient_t, padding=padding), x, dw))
  return y, functools.reduce(jnp.add, terms) if terms else jnp.zeros_like(y)


def _kernel_gradient_t(x, g, padding):
  """The transpose of dw -> conv(x, dw): ``kernel_gradient`` on the CPU, XLA's elsewhere."""
  (pt, pb), (pl, pr) = padding
  kernel_shape = (x.shape[1] + pt + pb - g.shape[1] + 1, x.shape[2] + pl + pr - g.shape[2] + 1)
  dw = jax.ShapeDtypeStruct(kernel_shape + (x.shape[-1], g.shape[-1]), x.dtype)

  def xla(x, g):
    return jax.linear_transpose(lambda w: _conv(x, w, padding), dw)(g)[0]

  def cpu(x, g):
    return kernel_gradient(x, g, kernel_shape, padding).astype(x.dtype)
  return lax.platform_dependent(x, g, cpu=cpu, default=xla)


conv2d.defjvp(_conv2d_jvp, symbolic_zeros=True)


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
  """``lax.conv_general_dilated`` whose kernel gradient is computed as matmuls (see above).

  The fast path covers 2-D NHWC/HWIO convolutions with unit strides and dilations, one
  group, default precision, "VALID" or explicit padding of at most k - 1 per side;
  anything else is passed through.
  """
  if isinstance(padding, str) and padding.upper() == "VALID":
    padding = ((0, 0),) * (lhs.ndim - 2)
  fast = (_FAST.get() and _is_nhwc(dimension_numbers, lhs.ndim)
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


def _batch_linear_call(axis_data, args, dims, *, callee, transpose_thunk, num_callee_consts,
                       num_res):
  """vmap of a ``linear_call`` (which JAX does not batch): a ``linear_call`` of the vmapped
  function and its vmapped transpose, every linear operand batched along axis 0."""
  params = dict(callee=callee, transpose_thunk=transpose_thunk,
                num_callee_consts=num_callee_consts, num_res=num_res)
  if all(d is None for d in dims):
    outs = _LINEAR_CALL.bind(*args, **params)
    return outs, [None] * len(outs)
  size = axis_data.size
  num_fixed = num_callee_consts + num_res
  fixed, fixed_dims = args[:num_fixed], dims[:num_fixed]
  linear = [jnp.broadcast_to(a, (size,) + a.shape) if d is None else jnp.moveaxis(a, d, 0)
            for a, d in zip(args[num_fixed:], dims[num_fixed:])]
  transpose, t_consts = transpose_thunk()

  def fun(fixed, linear):
    return jax.vmap(jaxpr_as_fun(callee), (*fixed_dims, *[0] * len(linear)))(*fixed, *linear)

  def fun_transpose(fixed, cts):
    in_axes = (*[None] * len(t_consts), *fixed_dims[num_callee_consts:], *[0] * len(cts))
    return jax.vmap(jaxpr_as_fun(transpose), in_axes)(*t_consts, *fixed[num_callee_consts:],
                                                      *cts)
  outs = linear_call(fun, fun_transpose, list(fixed), linear)
  return outs, [0] * len(outs)


_JAX_LINEAR_CALL_JVP = ad.primitive_jvps[_LINEAR_CALL]


def _jvp_linear_call(primals, tangents, **params):
  """JAX's ``linear_call`` JVP, extended to tangents of the non-linear operands.

  JAX's rule asserts that the residuals (here the convolution input x, the pooling
  input and output) have no tangent, which is what second-order derivatives give them.
  ``linear_call(f, t, res, lin)`` is linear in ``lin``, so its tangent is the
  ``linear_call`` of the ``lin`` tangents (transposed by ``t`` as before) plus the JVP of
  ``f`` in ``res`` at fixed ``lin``, which JAX differentiates like any function.
  """
  fixed = params["num_callee_consts"] + params["num_res"]
  if all(type(t) is ad.Zero for t in tangents[:fixed]):
    return _JAX_LINEAR_CALL_JVP(primals, tangents, **params)
  primals_out = _LINEAR_CALL.bind(*primals, **params)
  callee, linear = jaxpr_as_fun(params["callee"]), primals[fixed:]
  _, tangents_out = jax.jvp(lambda *res: callee(*res, *linear), tuple(primals[:fixed]),
                            tuple(ad.instantiate_zeros(t) for t in tangents[:fixed]))
  if not all(type(t) is ad.Zero for t in tangents[fixed:]):
    lin = _LINEAR_CALL.bind(
        *primals[:fixed], *[ad.instantiate_zeros(t) for t in tangents[fixed:]], **params)
    tangents_out = [a + b for a, b in zip(tangents_out, lin)]
  return primals_out, tangents_out


def _pool(x):
  b, h, w, c = x.shape
  return x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def max_pool_2x2(x):
  """``nn.max_pool(x, (2, 2), strides=(2, 2))`` of NHWC ``x``, with the gradient above."""
  if not _FAST.get() or x.ndim != 4 or x.shape[1] % 2 or x.shape[2] % 2:
    return nn.max_pool(x, (2, 2), strides=(2, 2))
  return _max_pool_even(x)


@jax.custom_jvp
def _max_pool_even(x):
  return _pool(x)


@_max_pool_even.defjvp
def _max_pool_jvp(primals, tangents):
  """dy, linear in dx: the tangent of each window's first maximum, a ``linear_call`` whose
  transpose is ``_first_max_gradient`` (so reverse mode runs it), on the CPU; XLA's elsewhere."""
  (x,), (dx,) = primals, tangents
  y = _pool(x)
  return y, lax.platform_dependent(x, y, dx, cpu=_first_max_tangent, default=_xla_pool_tangent)


def _xla_pool_tangent(x, y, dx):
  del y
  return jax.jvp(lambda x_: nn.max_pool(x_, (2, 2), strides=(2, 2)), (x,), (dx,))[1]


def _first_max_tangent(x, y, dx):
  return linear_call(lambda xy, dx: _first_max_select(*xy, dx),
                     lambda xy, g: _first_max_gradient(*xy, g), (x, y), dx)


def _first_max_masks(x, y):
  """Four bool [B, H/2, W/2, C] masks, one per position of the 2x2 window in row-major
  order: True where that position holds the window's first maximum (the element
  ``select_and_scatter``, and torch's MaxPool2d, pick)."""
  b, h, w, c = x.shape
  is_max = x.reshape(b, h // 2, 2, w // 2, 2, c) == y[:, :, None, :, None, :]
  e00, e01 = is_max[:, :, 0, :, 0], is_max[:, :, 0, :, 1]
  e10 = is_max[:, :, 1, :, 0]
  return e00, e01 & ~e00, e10 & ~(e00 | e01), ~(e00 | e01 | e10)


def _first_max_select(x, y, dx):
  """dy of 2x2 max-pooling with output y: dx at the first maximum of each window."""
  b, h, w, c = x.shape
  windows = dx.reshape(b, h // 2, 2, w // 2, 2, c)
  m00, m01, m10, _ = _first_max_masks(x, y)
  return jnp.where(m00, windows[:, :, 0, :, 0], jnp.where(
      m01, windows[:, :, 0, :, 1], jnp.where(m10, windows[:, :, 1, :, 0], windows[:, :, 1, :, 1])))


def _first_max_gradient(x, y, g):
  """dL/dx of 2x2 max-pooling with output y: g to the first maximum of each window,
  elementwise (the transpose of ``_first_max_select``)."""
  b, h, w, c = x.shape
  m00, m01, m10, m11 = _first_max_masks(x, y)
  zero = jnp.zeros_like(g)
  top = jnp.stack([jnp.where(m00, g, zero), jnp.where(m01, g, zero)], axis=3)
  bottom = jnp.stack([jnp.where(m10, g, zero), jnp.where(m11, g, zero)], axis=3)
  return jnp.stack([top, bottom], axis=2).reshape(b, h, w, c)
