"""docs/extending.md: its Python blocks run as they stand, and compute what the page says."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from coseg_jax import segment_group
from coseg_jax.models.attention import ATTENTIONS, reduce_group
from test_group import sharpened
from tiny import REPO

pytestmark = pytest.mark.slow  # runs the docs' examples, training included

PAGE = REPO / "docs" / "extending.md"


@pytest.fixture(scope="module")
def page():
  """The namespace left by running every ```python block of the page, in order.

  After the first block, the random variables are sharpened as a trained model's would be
  (at initialisation every probability is 0.5 +- 1e-4, whatever the attention).
  """
  blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S)
  assert len(blocks) == 5
  namespace = {}
  with pytest.MonkeyPatch.context() as patch:
    patch.setitem(ATTENTIONS, "bottleneck", None)  # the page registers it; removed afterwards
    for n, block in enumerate(blocks):
      exec(compile(block, str(PAGE), "exec"), namespace)  # pylint: disable=exec-used
      if n == 0:
        namespace["variables"] = sharpened(namespace["variables"])
    yield namespace


def test_softmax_weighted_mean_is_used_and_between_mean_and_max(page):
  group, model, variables = page["group"], page["model"], page["variables"]
  reduction = page["softmax_weighted_mean"]
  alphas = np.random.default_rng(1).uniform(size=(4, 6))
  weighted = np.asarray(reduction(alphas))
  assert np.all(weighted >= alphas.mean(axis=0) - 1e-6)
  assert np.all(weighted <= alphas.max(axis=0) + 1e-6)
  np.testing.assert_allclose(reduction(alphas, temperature=1e6), alphas.mean(axis=0), rtol=1e-5)
  # the masks are those of Algorithm 1 with that context attention, not the mean's
  probs = segment_group(model, variables, group, reduce=page["softmax_weighted_mean"])
  np.testing.assert_array_equal(page["masks"], probs > 0.5)
  mean_probs = segment_group(model, variables, group)
  assert np.abs(probs - mean_probs).max() > 1e-6
  assert page["masks"].shape == page["masks_loo"].shape == (5, 64, 64)


def test_a_custom_reduction_leaving_one_out_sees_the_other_images():
  alphas = np.arange(12, dtype=np.float32).reshape(3, 4)
  got = reduce_group(alphas, lambda a: a.max(axis=0), leave_one_out=True)
  np.testing.assert_array_equal(got, [alphas[2], alphas[2], alphas[1]])
  with pytest.raises(ValueError, match=r"must map \[M, 4\] attentions to \[4\]"):
    reduce_group(alphas, lambda a: a)


def test_mask_sensitivity_forward_equals_reverse_and_finite_differences(page):
  foreground, alpha_g, c = page["foreground"], page["alpha_g"], page["c"]
  probs = segment_group(page["model"], page["variables"], page["group"])
  np.testing.assert_allclose(page["probs"], probs, atol=1e-5)
  np.testing.assert_allclose(page["dprobs"][0].mean(), page["sensitivity"][c], rtol=1e-3)
  # central differences of each image's foreground area (pixel means: float32 noise averages out)
  eps = 1e-2
  step = jnp.eye(alpha_g.size)[c] * eps
  area = lambda a: foreground(a).mean(axis=(1, 2))
  finite = (area(alpha_g + step) - area(alpha_g - step)) / (2 * eps)
  assert float(jnp.abs(finite).max()) > 1e-4  # the masks do depend on channel c
  np.testing.assert_allclose(page["dprobs"].mean(axis=(1, 2)), finite,
                             rtol=2e-2, atol=2e-2 * float(jnp.abs(finite).max()))


def test_custom_learner_is_trained_and_used(page):
  custom, custom_variables = page["custom"], page["custom_variables"]
  learner = custom_variables["params"]["learner"]
  assert sorted(learner) == ["Dense_0", "Dense_1"]
  assert learner["Dense_0"]["kernel"].shape == (16, 4)
  assert page["logits_a"].shape == (2, 64, 64, 2)
  assert page["custom_probs"].shape == (5, 64, 64)
  x = page["x"]

  def loss(params):
    logits_a, _ = custom.apply({**custom_variables, "params": params}, x[:2], x[2:4])
    return jnp.mean(logits_a**2)
  grads = jax.grad(loss)(custom_variables["params"])["learner"]
  assert all(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(grads))
  # the registered name builds the model with that learner (VGG16's 512 channels)
  images = jnp.zeros((1, 32, 32, 3))
  shapes = jax.eval_shape(lambda: page["built"].init(jax.random.key(0), images, images))
  assert shapes["params"]["learner"]["Dense_0"]["kernel"].shape == (512, 128)
