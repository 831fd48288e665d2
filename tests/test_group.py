"""Instant group co-segmentation (Algorithm 1): reductions, pair equivalence, chunking, errors."""

import jax
import numpy as np
import pytest

from coseg_jax import (CoSegNet, binarize, init_variables, preprocess, segment_group,
                       segment_pairwise)
from coseg_jax import group
from coseg_jax.models.attention import reduce_group

from bench.common import compile_counts
from tiny import SIZE, SMALL, attentions


def uint8_images(n, seed=0):
  """Noise images around a different random colour each, so their attentions differ."""
  rng = np.random.RandomState(seed)
  colours = rng.randint(0, 256, (n, 1, 1, 3))
  noise = rng.randint(-60, 61, (n, SIZE, SIZE, 3))
  return np.clip(colours + noise, 0, 255).astype(np.uint8)


def sharpened(variables, scale=30.0):
  """Scales the attention FC and the last conv so that the attention visibly matters.

  At random initialisation every alpha is close to sigmoid(0) = 0.5 and the logits are
  tiny, which would make "which attention did this image get" hard to observe.
  """
  params = dict(variables["params"])
  if "learner" in params:
    params["learner"] = jax.tree.map(lambda w: w * scale, params["learner"])
  decoder = dict(params["decoder"])
  decoder["conv_4"] = jax.tree.map(lambda w: w * scale, decoder["conv_4"])
  params["decoder"] = decoder
  return {**variables, "params": params}


@pytest.fixture(scope="module", params=attentions())
def small(request):
  model = CoSegNet(request.param, **SMALL)
  return model, sharpened(init_variables(model, jax.random.key(1), SIZE))


def pair_probs(model, variables, images):
  x = preprocess(images)
  logits_a, logits_b = model.apply(variables, x[:1], x[1:2])
  return np.stack([jax.nn.softmax(logits_a)[0, ..., 1], jax.nn.softmax(logits_b)[0, ..., 1]])


def test_reduce_group_mean_min_and_leave_one_out():
  alphas = np.array([[0.1, 0.9], [0.5, 0.2], [0.3, 0.4]], np.float32)
  np.testing.assert_allclose(reduce_group(alphas, "mean"), np.full((3, 2), [0.3, 0.5]), rtol=1e-6)
  np.testing.assert_allclose(reduce_group(alphas, "min"), np.full((3, 2), [0.1, 0.2]))
  loo_mean = reduce_group(alphas, "mean", leave_one_out=True)
  np.testing.assert_allclose(loo_mean, [[0.4, 0.3], [0.2, 0.65], [0.3, 0.55]], rtol=1e-6)
  loo_min = reduce_group(alphas, "min", leave_one_out=True)
  np.testing.assert_allclose(loo_min, [[0.3, 0.2], [0.1, 0.4], [0.1, 0.2]])
  np.testing.assert_allclose(reduce_group(alphas[:1], "min", True), alphas[:1])
  with pytest.raises(ValueError, match="reduce must be one of"):
    reduce_group(alphas, "max")


@pytest.mark.parametrize("reduce", ["mean", "min"])
def test_group_of_two_with_leave_one_out_equals_pair(small, reduce):
  model, variables = small
  images = uint8_images(2, seed=3)
  probs = segment_group(model, variables, images, reduce=reduce, leave_one_out=True)
  np.testing.assert_allclose(probs, pair_probs(model, variables, images), atol=1e-4)


def test_group_of_two_mean_fca_equals_pair_and_ca_does_not(small):
  model, variables = small
  images = uint8_images(2, seed=4)
  probs = segment_group(model, variables, images, reduce="mean")
  diff = np.abs(probs - pair_probs(model, variables, images)).max()
  if model.attention in ("fca", "none"):
    assert diff < 1e-4
  else:  # Algorithm 1 includes the image's own attention: not the pair forward.
    assert diff > 1e-3


def test_group_matches_manual_algorithm_1(small):
  """segment_group == encode all, mean of all alphas, decode each (Algorithm 1 by hand)."""
  model, variables = small
  images = uint8_images(5, seed=5)
  x = preprocess(images)
  f = model.apply(variables, x, method=CoSegNet.encode)
  alpha = model.apply(variables, f, method=CoSegNet.attend)
  mean = np.broadcast_to(np.asarray(alpha).mean(0, keepdims=True), alpha.shape)
  applied = model.apply(variables, mean, mean, method=CoSegNet.combine)
  logits = model.apply(variables, f, applied, method=CoSegNet.decode)
  expected = jax.nn.softmax(logits)[..., 1]
  probs = segment_group(model, variables, images, chunk_size=2)
  assert probs.dtype == np.float32
  np.testing.assert_allclose(probs, expected, atol=1e-4)
  np.testing.assert_array_equal(binarize(probs), probs > 0.5)


def test_chunking_compiles_once_and_does_not_change_results():
  model = CoSegNet("csa", **SMALL)
  variables = init_variables(model, jax.random.key(2), SIZE)
  images = uint8_images(11, seed=6)
  reference = segment_group(model, variables, images, chunk_size=11)
  with compile_counts() as counts:
    for n in (1, 3, 4, 9, 11):
      probs = segment_group(model, variables, images[:n], chunk_size=4)
      if n == 11:
        np.testing.assert_allclose(probs, reference, atol=2e-5)
  assert counts["encode_chunk"] == 1 and counts["decode_chunk"] == 1


@pytest.mark.slow
def test_min_ignores_what_one_image_lacks():
  """Group Minimum Attention: a channel off in one image is off for all."""
  model = CoSegNet("ca", **SMALL)
  variables = init_variables(model, jax.random.key(3), SIZE)
  _, alphas = group.group_attention(model, variables, uint8_images(4, seed=7), chunk_size=3)
  assert alphas.shape == (4, 16)
  np.testing.assert_allclose(reduce_group(alphas, "min")[0], alphas.min(0))


@pytest.mark.slow
def test_single_image_is_segmented_with_its_own_attention():
  model = CoSegNet("ca", **SMALL)
  variables = init_variables(model, jax.random.key(4), SIZE)
  image = uint8_images(1, seed=8)
  probs = segment_group(model, variables, image)
  probs_loo = segment_group(model, variables, image, leave_one_out=True)
  x = preprocess(image)
  logits, _ = model.apply(variables, x, x)  # the image paired with itself
  np.testing.assert_allclose(probs, jax.nn.softmax(logits)[..., 1], atol=2e-5)
  np.testing.assert_allclose(probs_loo, probs, atol=1e-6)


@pytest.mark.parametrize("encode_once", [False, pytest.param(True, marks=pytest.mark.slow)])
@pytest.mark.parametrize("attention", attentions())
def test_pairwise_averages_over_all_pairs(attention, encode_once):
  model = CoSegNet(attention, **SMALL)
  variables = init_variables(model, jax.random.key(5), SIZE)
  images = uint8_images(3, seed=9)
  probs = segment_pairwise(model, variables, images, chunk_size=2,
                              encode_once=encode_once)
  p01 = pair_probs(model, variables, images[[0, 1]])
  p02 = pair_probs(model, variables, images[[0, 2]])
  p12 = pair_probs(model, variables, images[[1, 2]])
  expected = np.stack([(p01[0] + p02[0]) / 2, (p01[1] + p12[0]) / 2, (p02[1] + p12[1]) / 2])
  np.testing.assert_allclose(probs, expected, atol=2e-5)


def test_bad_groups_raise_clear_errors():
  model = CoSegNet("ca", **SMALL)
  variables = init_variables(model, jax.random.key(6), SIZE)
  with pytest.raises(ValueError, match="empty group"):
    segment_group(model, variables, [])
  with pytest.raises(ValueError, match="same shape"):
    segment_group(model, variables, [np.zeros((64, 64, 3), np.uint8),
                                     np.zeros((96, 64, 3), np.uint8)])
  with pytest.raises(ValueError, match="multiples of 32"):
    segment_group(model, variables, np.zeros((2, 40, 64, 3), np.uint8))
  with pytest.raises(ValueError, match="at least 2 images"):
    segment_pairwise(model, variables, uint8_images(1))
  with pytest.raises(ValueError, match="chunk_size"):
    segment_group(model, variables, uint8_images(2), chunk_size=0)


@pytest.mark.slow
def test_wrong_pixel_values_are_refused_naming_the_image():
  model = CoSegNet("ca", **SMALL)
  variables = init_variables(model, jax.random.key(6), SIZE)
  images = uint8_images(3)
  unnormalised = images.astype(np.float32)  # 0..255 floats, not normalised
  with pytest.raises(ValueError, match=r"image 0: float values in \[\d+, 2\d\d\] are outside the "
                                       r"normalised range \[-2.12, 2.64\]"):
    segment_group(model, variables, unnormalised)
  with pytest.raises(ValueError, match="image 0: dtype int64 is neither uint8"):
    segment_group(model, variables, images.astype(np.int64))
  with pytest.raises(ValueError, match="image 0: dtype int64 is neither uint8"):
    segment_group(model, variables, images.tolist())  # nested lists of numbers
  normalised = preprocess(images)
  normalised[1, 5, 7, 0] = np.nan
  normalised[1, 9, 9, 2] = np.inf
  with pytest.raises(ValueError, match="image 1: 2 NaN or infinite pixel values"):
    segment_group(model, variables, normalised)
  with pytest.raises(ValueError, match="image 1: 2 NaN or infinite"):
    segment_pairwise(model, variables, normalised)
  mixed = [images[0], images[1].astype(np.float32)]  # one uint8, one 0..255 float
  with pytest.raises(ValueError, match="image 1: float values"):
    segment_group(model, variables, mixed)
  # uint8 keeps being preprocessed for you: the same masks as its normalised floats.
  np.testing.assert_allclose(segment_group(model, variables, images),  # normalised on device
                             segment_group(model, variables, preprocess(images)), atol=1e-6)


@pytest.mark.parametrize("skip", ["pool4", "pool3"])
def test_a_skip_model_in_both_protocols_and_with_the_gate(skip):
  """Features with skips travel through chunks, pairs and the partner gate (pool5 only)."""
  from coseg_jax.proj.real_photos.partner_gate import GATE  # pylint: disable=g-import-not-at-top
  model = CoSegNet("fca", skip=skip, **SMALL)
  variables = sharpened(init_variables(model, jax.random.key(5), SIZE))
  images = uint8_images(3, seed=9)
  plain = segment_pairwise(model, variables, images, chunk_size=2)
  once = segment_pairwise(model, variables, images, chunk_size=2, encode_once=True)
  np.testing.assert_allclose(plain, once, atol=2e-5)
  pair = segment_group(model, variables, images[:2], leave_one_out=True, chunk_size=1)
  np.testing.assert_allclose(pair, pair_probs(model, variables, images[:2]), atol=2e-5)
  gated = segment_group(model, variables, images, chunk_size=2, gate=GATE)
  assert gated.shape == (3, SIZE, SIZE) and np.isfinite(gated).all()
  assert np.abs(gated - segment_group(model, variables, images, chunk_size=2)).max() > 1e-3
