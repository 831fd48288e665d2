"""Forward and reverse mode through ``model.apply`` agree for every variant (functional research).

Reverse mode runs the default ops, ``conv.FAST`` (the CPU's fast kernel and max-pool
gradients, for any loss a user writes); forward mode (``jax.jvp``, ``jax.linearize``,
``jax.jacfwd``, Hessian-vector products) runs the same model built with ``ops=conv.XLA``,
the documented switch, with the same variables. Their agreement checks the fast gradients
against an independent derivative of the whole model.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from coseg_jax import CoSegNet, init_variables
from coseg_jax.models import conv
from tiny import SIZE, SMALL, images

pytestmark = pytest.mark.slow  # whole models through jvp, jacfwd and Hessians: minutes of compiling (test_conv.py checks the rules fast)


def random_like(tree, seed):
  leaves, treedef = jax.tree.flatten(tree)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  return treedef.unflatten([jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves)])


def vdot_tree(a, b):
  return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


# the reference decoder (unpadded 5x5/7x7 convolutions) needs wider pool5 features
REFERENCE = dict(decoder_type="reference", encoder_widths=(8, 16, 32, 32, 64))


@pytest.mark.parametrize("attention,options", [
    ("ca", SMALL), ("fca", SMALL), ("csa", SMALL), ("ca_mlp", SMALL), ("none", SMALL),
    pytest.param("ca_mlp", REFERENCE, marks=pytest.mark.slow)])
def test_forward_mode_equals_reverse_mode(attention, options):
  model = CoSegNet(attention, **options)
  variables = init_variables(model, jax.random.key(0), SIZE)
  params = variables["params"]
  x = images(0)
  cotangent = jax.random.normal(jax.random.key(1), (1, SIZE, SIZE, 2))

  def score(model, params):
    logits_a, logits_b = model.apply({**variables, "params": params}, x[:1], x[1:])
    return jnp.vdot(logits_a, cotangent) + jnp.sum(logits_b**2) / SIZE
  forward_model = functools.partial(score, model.clone(ops=conv.XLA))
  direction = random_like(params, seed=2)
  value, forward = jax.jvp(forward_model, (params,), (direction,))
  reverse = vdot_tree(direction, jax.grad(functools.partial(score, model))(params))
  assert abs(float(forward)) > 1e-3  # a non-trivial directional derivative
  np.testing.assert_allclose(forward, reverse, rtol=2e-4)
  _, linear = jax.linearize(forward_model, params)
  np.testing.assert_allclose(linear(direction), forward, rtol=1e-5)
  # jacfwd batches the tangents (vmap): two directions at once
  both = jax.jacfwd(lambda t: forward_model(jax.tree.map(
      lambda p, d, e: p + t[0] * d + t[1] * e, params, direction, random_like(params, 3))))
  np.testing.assert_allclose(both(jnp.zeros(2))[0], forward, rtol=1e-4)
  assert np.isfinite(float(value))


def test_forward_mode_through_training_mode_and_images():
  """Train mode (batch statistics, dropout) and derivatives with respect to the images."""
  model = CoSegNet("csa", **SMALL)
  variables = init_variables(model, jax.random.key(0), SIZE)
  x = images(4)

  def mean_foreground(model, image_a):
    (logits_a, _), _ = model.apply(variables, image_a, x[1:], train=True, mutable=["batch_stats"],
                                   rngs={"dropout": jax.random.key(5)})
    return jnp.mean(jax.nn.softmax(logits_a)[..., 1])
  direction = jax.random.normal(jax.random.key(6), x[:1].shape)
  _, forward = jax.jvp(functools.partial(mean_foreground, model.clone(ops=conv.XLA)), (x[:1],),
                       (direction,))
  reverse = jnp.vdot(direction, jax.grad(functools.partial(mean_foreground, model))(x[:1]))
  np.testing.assert_allclose(forward, reverse, rtol=2e-4, atol=1e-7)


def test_default_model_refuses_forward_mode_with_jax_error():
  """The documented switch: the default (FAST) model has no forward mode."""
  model = CoSegNet("fca", **SMALL)
  variables = init_variables(model, jax.random.key(0), SIZE)
  x = images(2)
  score = lambda image_a: jnp.sum(model.apply(variables, image_a, x[1:])[0])
  with pytest.raises(TypeError, match="custom_vjp"):
    jax.jvp(score, (x[:1],), (x[:1],))


def test_hessian_vector_product_reverse_over_reverse_equals_forward_over_reverse():
  """Second order through the fast CPU gradients (reverse over reverse, the default ops)
  equals forward over reverse of XLA's own gradients (``ops=conv.XLA``)."""
  model = CoSegNet("fca", **SMALL)
  variables = init_variables(model, jax.random.key(0), SIZE)
  x = images(7)

  def score(model, params):
    logits_a, logits_b = model.apply({**variables, "params": params}, x[:1], x[1:])
    return jnp.mean(jax.nn.softmax(logits_a)[..., 1] ** 2) + jnp.mean(logits_b**2)
  direction = random_like(variables["params"], seed=8)
  fast_score = functools.partial(score, model)
  fast = jax.grad(lambda p: vdot_tree(jax.grad(fast_score)(p), direction))(variables["params"])
  plain = jax.jvp(jax.grad(functools.partial(score, model.clone(ops=conv.XLA))),
                  (variables["params"],), (direction,))[1]
  assert max(float(jnp.abs(v).max()) for v in jax.tree.leaves(fast)) > 1e-4
  jax.tree.map(lambda a, b: np.testing.assert_allclose(
      a, b, rtol=1e-3, atol=1e-4 * float(jnp.abs(b).max())), fast, plain)
