"""models/conv.py: same values and gradients as lax convolution and flax max-pooling.

``conv.FAST`` (the models' default) is a pair of ``jax.custom_vjp`` functions: reverse mode,
also under ``jax.vmap`` and second order, equals lax's; forward mode raises and is what
``conv.XLA`` is for. Nothing here touches JAX's tables (tests/test_import_state.py).
"""

import functools

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
import pytest

from coseg_jax.models import conv

NHWC = ("NHWC", "HWIO", "NHWC")


def lax_conv(x, w, padding, strides=(1, 1)):
  return lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=NHWC)


def grads(fn, x, w, cotangent):
  return jax.grad(lambda x, w: jnp.vdot(fn(x, w), cotangent), argnums=(0, 1))(x, w)


# (input channels, output channels, kernel, padding): same-size 3x3 as VGG and the paper's
# decoder, the reference decoder's unpadded 5x5/7x7 (flax passes "VALID" as a string),
# asymmetric padding;
# more input than output channels and the reverse take the two branches of kernel_gradient.
CASES = [(3, 8, 3, ((1, 1), (1, 1))), (16, 4, 3, ((1, 1), (1, 1))),
         (4, 6, 5, ((0, 0), (0, 0))), (6, 2, 7, "VALID"),
         (5, 3, 3, ((0, 2), (1, 0)))]


@pytest.mark.parametrize("c_in,c_out,k,padding", CASES)
def test_conv_values_and_gradients_match_lax(c_in, c_out, k, padding):
  rng = np.random.default_rng(k + c_in)
  x = jnp.asarray(rng.normal(size=(2, 12, 10, c_in)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(k, k, c_in, c_out)), jnp.float32)
  fast = lambda x, w: conv.conv_general_dilated(x, w, (1, 1), padding, dimension_numbers=NHWC)
  reference = lambda x, w: lax_conv(x, w, padding)
  y = fast(x, w)
  np.testing.assert_allclose(y, reference(x, w), rtol=1e-5, atol=1e-5)
  cotangent = jnp.asarray(rng.normal(size=y.shape), jnp.float32)
  for got, want in zip(grads(fast, x, w, cotangent), grads(reference, x, w, cotangent)):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


@pytest.mark.parametrize("block_elements", [1, 200, 2**40])
def test_kernel_gradient_is_independent_of_the_band_size(block_elements):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(3, 8, 8, 4)), jnp.float32)
  g = jnp.asarray(rng.normal(size=(3, 8, 8, 5)), jnp.float32)
  padding = ((1, 1), (1, 1))
  got = conv.kernel_gradient(x, g, (3, 3), padding, block_elements=block_elements)
  w = jnp.zeros((3, 3, 4, 5), jnp.float32)
  want = jax.vjp(lambda w: lax_conv(x, w, padding), w)[1](g)[0]
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_valid_padding_takes_the_fast_path(monkeypatch):
  calls = []
  monkeypatch.setattr(conv, "conv2d", lambda x, w, padding: calls.append(padding) or 0)
  conv.conv_general_dilated(jnp.zeros((1, 8, 8, 2)), jnp.zeros((5, 5, 2, 3)), (1, 1), "VALID",
                            dimension_numbers=NHWC)
  assert calls == [((0, 0), (0, 0))]


def test_other_convolutions_fall_back_to_lax():
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.normal(size=(1, 8, 8, 3)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(3, 3, 3, 4)), jnp.float32)
  strided = lambda x, w: conv.conv_general_dilated(x, w, (2, 2), "SAME", dimension_numbers=NHWC)
  reference = lambda x, w: lax_conv(x, w, "SAME", (2, 2))
  cotangent = jnp.ones((1, 4, 4, 4), jnp.float32)
  for got, want in zip(grads(strided, x, w, cotangent), grads(reference, x, w, cotangent)):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_max_pool_values_and_gradient_match_flax_with_ties():
  # small integers: many windows hold their maximum twice or more
  x = jnp.asarray(np.random.default_rng(2).integers(0, 3, size=(2, 6, 8, 3)), jnp.float32)
  cotangent = jnp.asarray(np.random.default_rng(3).normal(size=(2, 3, 4, 3)), jnp.float32)
  flax_pool = lambda x: nn.max_pool(x, (2, 2), strides=(2, 2))
  np.testing.assert_array_equal(conv.max_pool_2x2(x), flax_pool(x))
  got = jax.grad(lambda x: jnp.vdot(conv.max_pool_2x2(x), cotangent))(x)
  want = jax.grad(lambda x: jnp.vdot(flax_pool(x), cotangent))(x)
  np.testing.assert_array_equal(got, want)
  assert int((got != 0).sum()) == cotangent.size  # one element per window gets it


def test_odd_sized_max_pool_is_flax_max_pool():
  x = jnp.arange(2 * 5 * 7 * 1, dtype=jnp.float32).reshape(2, 5, 7, 1)
  np.testing.assert_array_equal(conv.max_pool_2x2(x), nn.max_pool(x, (2, 2), strides=(2, 2)))


def net(ops, x, w1, w2):
  """conv -> tanh -> max-pool -> conv -> tanh, summed: both kernels and the pool in play."""
  same = ((1, 1), (1, 1))
  y = jnp.tanh(ops.conv_general_dilated(x, w1, (1, 1), same, dimension_numbers=NHWC))
  y = ops.max_pool_2x2(y)
  return jnp.sum(jnp.tanh(ops.conv_general_dilated(y, w2, (1, 1), same, dimension_numbers=NHWC)))


def net_inputs(seed=7):
  rng = np.random.default_rng(seed)
  return (jnp.asarray(rng.normal(size=(2, 8, 8, 2)), jnp.float32),
          jnp.asarray(rng.normal(size=(3, 3, 2, 3)), jnp.float32),
          jnp.asarray(rng.normal(size=(3, 3, 3, 2)), jnp.float32))


def test_per_example_gradients_under_vmap_and_jit_equal_lax():
  x, w1, w2 = net_inputs()
  per_example = lambda ops: jax.jit(jax.vmap(jax.grad(
      lambda x1, w1, w2: net(ops, x1[None], w1, w2), argnums=(1, 2)), (0, None, None)))
  jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-4, atol=1e-5),
               per_example(conv.FAST)(x, w1, w2), per_example(conv.XLA)(x, w1, w2))


def test_reverse_over_reverse_equals_lax():
  """grad of grad and jax.jacrev of jax.grad differentiate the fast gradients themselves."""
  x, w1, w2 = net_inputs()

  def second_order(ops):
    f = functools.partial(net, ops, x)
    grad_of_grad = jax.grad(lambda w1: jnp.sum(jax.grad(f, 1)(w1, w2) ** 2))(w1)
    return grad_of_grad, jax.jacrev(jax.grad(f, 0), argnums=(0, 1))(w1, w2)
  jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-4, atol=1e-4),
               second_order(conv.FAST), second_order(conv.XLA))


def test_forward_mode_needs_the_xla_ops():
  """A custom_vjp has no forward mode: FAST raises JAX's own error; XLA is lax/flax."""
  x, w1, w2 = net_inputs()
  with pytest.raises(TypeError, match="custom_vjp"):
    jax.jvp(functools.partial(net, conv.FAST, x), (w1, w2), (w1, w2))
  assert conv.XLA.conv_general_dilated is lax.conv_general_dilated
  y = jnp.arange(2 * 4 * 6 * 3, dtype=jnp.float32).reshape(2, 4, 6, 3)
  np.testing.assert_array_equal(conv.XLA.max_pool_2x2(y), nn.max_pool(y, (2, 2), strides=(2, 2)))
  hessian = jax.hessian(functools.partial(net, conv.XLA, x), argnums=(0, 1))(w1, w2)
  assert hessian[0][0].shape == w1.shape * 2


def primitives(fn, *args):
  """Names of the primitives at the top level of ``fn``'s jaxpr."""
  return {eqn.primitive.name for eqn in jax.make_jaxpr(fn)(*args).eqns}


def test_cpu_gradient_program_has_neither_xla_kernel_gradient_nor_pool_scatter():
  """On the CPU the lowered gradient is the band scan of kernel_gradient and elementwise
  selects: no select_and_scatter or reduce_window of XLA's max-pool gradient, and one
  convolution less than XLA's (its kernel gradient is a convolution)."""
  x, w1, w2 = net_inputs()
  conv_fn = lambda x, w: conv.conv_general_dilated(x, w, (1, 1), "VALID", dimension_numbers=NHWC)
  assert primitives(conv_fn, x, w1) == {"custom_vjp_call"}
  assert primitives(conv.max_pool_2x2, x) == {"custom_vjp_call"}
  text = {name: jax.jit(jax.grad(functools.partial(net, ops, x), argnums=(0, 1))).lower(
      w1, w2).as_text() for name, ops in (("fast", conv.FAST), ("xla", conv.XLA))}
  assert "while" in text["fast"] and "while" not in text["xla"]
  assert "reduce_window" not in text["fast"] and "select_and_scatter" not in text["fast"]
  assert text["fast"].count("convolution(") < text["xla"].count("convolution(")
