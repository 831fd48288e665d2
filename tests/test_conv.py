"""models/conv.py: same values and gradients as lax convolution and flax max-pooling.

The fast paths are traced inside ``conv.fast_gradients()`` only (the ``fast`` fixture);
outside it the operations are lax's and flax's and JAX's rule tables are untouched.
"""

import contextlib
import functools

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
import pytest

from jax._src import custom_derivatives
from jax.interpreters import ad, batching

from coseg_jax.models import conv

NHWC = ("NHWC", "HWIO", "NHWC")
LINEAR_CALL = custom_derivatives.linear_call_p


@pytest.fixture
def fast():
  """The test body traces the fast CPU gradients."""
  with conv.fast_gradients():
    yield


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
@pytest.mark.usefixtures("fast")
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


@pytest.mark.usefixtures("fast")
def test_valid_padding_takes_the_fast_path(monkeypatch):
  calls = []
  monkeypatch.setattr(conv, "conv2d", lambda x, w, padding: calls.append(padding) or 0)
  conv.conv_general_dilated(jnp.zeros((1, 8, 8, 2)), jnp.zeros((5, 5, 2, 3)), (1, 1), "VALID",
                            dimension_numbers=NHWC)
  assert calls == [((0, 0), (0, 0))]


@pytest.mark.usefixtures("fast")
def test_other_convolutions_fall_back_to_lax():
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.normal(size=(1, 8, 8, 3)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(3, 3, 3, 4)), jnp.float32)
  strided = lambda x, w: conv.conv_general_dilated(x, w, (2, 2), "SAME", dimension_numbers=NHWC)
  reference = lambda x, w: lax_conv(x, w, "SAME", (2, 2))
  cotangent = jnp.ones((1, 4, 4, 4), jnp.float32)
  for got, want in zip(grads(strided, x, w, cotangent), grads(reference, x, w, cotangent)):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.usefixtures("fast")
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


@pytest.mark.usefixtures("fast")
def test_odd_sized_max_pool_is_flax_max_pool():
  x = jnp.arange(2 * 5 * 7 * 1, dtype=jnp.float32).reshape(2, 5, 7, 1)
  np.testing.assert_array_equal(conv.max_pool_2x2(x), nn.max_pool(x, (2, 2), strides=(2, 2)))


@pytest.mark.usefixtures("fast")
@pytest.mark.parametrize("c_in,c_out,k,padding", CASES[:2] + CASES[3:4])
def test_forward_mode_matches_lax_and_reverse_mode(c_in, c_out, k, padding):
  """jvp, linearize and jacfwd (a vmap of the tangents) through the conv and the max-pool."""
  rng = np.random.default_rng(c_in + 10)
  x = jnp.asarray(rng.normal(size=(2, 12, 10, c_in)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(k, k, c_in, c_out)), jnp.float32)
  dx, dw = (jnp.asarray(rng.normal(size=a.shape), jnp.float32) for a in (x, w))

  def fast(x, w):
    y = conv.conv_general_dilated(x, w, (1, 1), padding, dimension_numbers=NHWC)
    return conv.max_pool_2x2(jnp.tanh(y[:, :y.shape[1] // 2 * 2, :y.shape[2] // 2 * 2]))

  def reference(x, w):
    y = lax_conv(x, w, padding)
    return nn.max_pool(jnp.tanh(y[:, :y.shape[1] // 2 * 2, :y.shape[2] // 2 * 2]), (2, 2),
                       strides=(2, 2))
  _, tangent = jax.jvp(fast, (x, w), (dx, dw))
  _, want = jax.jvp(reference, (x, w), (dx, dw))
  np.testing.assert_allclose(tangent, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
  np.testing.assert_allclose(jax.linearize(fast, x, w)[1](dx, dw), tangent, rtol=1e-5,
                             atol=1e-5 * np.abs(want).max())
  cotangent = jnp.asarray(rng.normal(size=tangent.shape), jnp.float32)
  gx, gw = grads(fast, x, w, cotangent)
  np.testing.assert_allclose(jnp.vdot(gx, dx) + jnp.vdot(gw, dw), jnp.vdot(tangent, cotangent),
                             rtol=1e-4)
  jacobian = jax.jacfwd(fast, argnums=1)(x, w)
  np.testing.assert_allclose(jnp.tensordot(jacobian, dw, w.ndim),
                             jax.jvp(fast, (x, w), (jnp.zeros_like(x), dw))[1], rtol=1e-4,
                             atol=1e-4)


@pytest.mark.parametrize("fast_gradients", [True, False])
def test_second_order_derivatives_equal_lax(fast_gradients):
  rng = np.random.default_rng(7)
  x = jnp.asarray(rng.normal(size=(1, 8, 8, 2)), jnp.float32)
  w1 = jnp.asarray(rng.normal(size=(3, 3, 2, 3)), jnp.float32)
  w2 = jnp.asarray(rng.normal(size=(3, 3, 3, 2)), jnp.float32)
  same = ((1, 1), (1, 1))

  def net(conv_fn, pool, w1, w2):
    return jnp.sum(jnp.tanh(conv_fn(pool(jnp.tanh(conv_fn(x, w1, same))), w2, same)))
  def fast(w1, w2):
    return net(lambda x, w, p: conv.conv_general_dilated(x, w, (1, 1), p, dimension_numbers=NHWC),
               conv.max_pool_2x2, w1, w2)

  def plain(w1, w2):
    return net(lax_conv, lambda x: nn.max_pool(x, (2, 2), strides=(2, 2)), w1, w2)
  # with respect to both kernels: the second convolution's kernel gradient and the pool's
  # gradient are differentiated in their inputs too
  with conv.fast_gradients() if fast_gradients else contextlib.nullcontext():
    hessian = jax.hessian(fast, argnums=(0, 1))(w1, w2)
    grad_of_grad = jax.grad(lambda w1: jnp.sum(jax.grad(fast, 1)(w1, w2) ** 2))(w1)
  jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-4, atol=1e-5), hessian,
               jax.hessian(plain, argnums=(0, 1))(w1, w2))
  np.testing.assert_allclose(
      grad_of_grad, jax.grad(lambda w1: jnp.sum(jax.grad(plain, 1)(w1, w2) ** 2))(w1),
      rtol=1e-4, atol=1e-4)


def primitives(fn, *args):
  """Names of the primitives at the top level of ``fn``'s jaxpr, traced afresh (jit's
  trace cache is keyed on the function and argument types, not on fast_gradients())."""
  return {eqn.primitive.name for eqn in jax.make_jaxpr(lambda *a: fn(*a))(*args).eqns}


def test_fast_paths_are_traced_inside_fast_gradients_only():
  x, w = jnp.zeros((1, 8, 8, 2)), jnp.zeros((3, 3, 2, 3))
  conv_fn = lambda x, w: conv.conv_general_dilated(x, w, (1, 1), "VALID", dimension_numbers=NHWC)
  assert primitives(conv_fn, x, w) == {"conv_general_dilated"}
  assert "reduce_window_max" in primitives(conv.max_pool_2x2, x)
  with conv.fast_gradients():
    assert primitives(conv_fn, x, w) == {"custom_jvp_call"}
    assert primitives(conv.max_pool_2x2, x) == {"custom_jvp_call"}
  assert primitives(conv_fn, x, w) == {"conv_general_dilated"}


def rules():
  return ad.primitive_jvps.get(LINEAR_CALL), batching.fancy_primitive_batchers.get(LINEAR_CALL)


def test_fast_gradients_puts_jax_rules_back_when_the_outermost_exits():
  jax_rules = rules()
  assert jax_rules[1] is None  # JAX has no batching rule for linear_call (else it is kept)
  with conv.fast_gradients():
    ours = rules()
    assert ours[0] is not jax_rules[0] and ours[1] is not None
    with conv.fast_gradients():
      assert rules() == ours
    assert rules() == ours  # still active
  assert rules() == jax_rules
  assert LINEAR_CALL not in batching.fancy_primitive_batchers
  with pytest.raises(ZeroDivisionError), conv.fast_gradients():
    1 / 0  # pylint: disable=pointless-statement
  assert rules() == jax_rules


def test_gradients_traced_inside_run_after_it_exits():
  """The rules are needed while tracing only: a step jitted (traced) inside runs outside;
  transforming it later (here vmap, whose batching rule is ours) needs the context again."""
  x = jnp.asarray(np.random.default_rng(4).normal(size=(2, 8, 8, 3)), jnp.float32)
  w = jnp.asarray(np.random.default_rng(5).normal(size=(3, 3, 3, 4)), jnp.float32)

  def loss(w):
    y = conv.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=NHWC)
    return jnp.sum(conv.max_pool_2x2(y) ** 2)

  def fast_step(w):
    with conv.fast_gradients():
      return jax.grad(loss)(w)
  step = jax.jit(fast_step)
  assert "linear_call" in str(jax.make_jaxpr(fast_step)(w))
  np.testing.assert_allclose(step(w), jax.grad(loss)(w), rtol=1e-4, atol=1e-4)
  assert rules()[1] is None
  with pytest.raises(NotImplementedError, match="linear_call"):
    jax.vmap(step)(jnp.stack([w, 2 * w]))
  with conv.fast_gradients():
    batched = jax.vmap(step)(jnp.stack([w, 2 * w]))
  np.testing.assert_allclose(batched[1], jax.grad(loss)(2 * w), rtol=1e-4, atol=1e-3)
