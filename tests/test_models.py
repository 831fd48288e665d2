"""CoSegNet: shapes, the attention equations (1)–(13), splitting, and input errors."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from coseg_jax import CoSegNet, init_variables, preprocess
from coseg_jax.models.coseg import SKIPS
from coseg_jax.models.decoder import UpsampleConv, upsample2x
import flax.linen as nn
from coseg_jax.models.vgg import conv_indices

from tiny import SIZE, SMALL, attentions, images


@functools.cache
def small_model(attention):
  """A small CoSegNet of ``attention`` and its variables (built once per attention)."""
  model = CoSegNet(attention, **SMALL)
  return model, init_variables(model, jax.random.key(0), SIZE)


@pytest.fixture(params=attentions())
def small(request):
  return small_model(request.param)


def test_encoder_names_follow_torchvision():
  assert conv_indices() == (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
  model = CoSegNet("ca")
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)),
                                             jnp.zeros((1, 32, 32, 3))))
  encoder = shapes["params"]["encoder"]
  assert sorted(encoder) == sorted(f"features_{i}" for i in conv_indices())
  assert encoder["features_28"]["kernel"].shape == (3, 3, 512, 512)
  decoder = shapes["params"]["decoder"]
  assert [decoder[f"conv_{i}"]["kernel"].shape[-1] for i in range(5)] == [256, 128, 64, 32, 2]


def test_pair_forward_shapes_and_encode(small):
  model, variables = small
  x = images(0)
  logits_a, logits_b = model.apply(variables, x[:1], x[1:])
  assert logits_a.shape == logits_b.shape == (1, SIZE, SIZE, 2)
  assert logits_a.dtype == jnp.float32
  f = model.apply(variables, x, method=CoSegNet.encode)
  assert f.shape == (2, SIZE // 32, SIZE // 32, 16)


def test_pair_forward_equals_split_parts(small):
  """__call__ is encode -> attend -> combine(own, other's) -> decode (Algorithm 1 split)."""
  model, variables = small
  x = images(1)
  logits_a, logits_b = model.apply(variables, x[:1], x[1:])
  f = model.apply(variables, x, method=CoSegNet.encode)
  alpha = model.apply(variables, f, method=CoSegNet.attend)
  for i, logits in enumerate((logits_a, logits_b)):
    applied = model.apply(variables, alpha[i:i + 1], alpha[1 - i:2 - i], method=CoSegNet.combine)
    expected = model.apply(variables, f[i:i + 1], applied, method=CoSegNet.decode)
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)


def _parts(model, variables, x):
  f = model.apply(variables, x, method=CoSegNet.encode)
  params = variables["params"]["learner"]
  gap = f.mean(axis=(1, 2))
  alpha = jax.nn.sigmoid(gap @ params["fc"]["kernel"] + params["fc"]["bias"])
  return f, alpha, params


def test_ca_equations():
  """Eq. (1)–(4): alpha = sigmoid(W GAP(f) + b); f'_A = alpha_B * f_A."""
  model, variables = small_model("ca")
  x = images(2)
  f, alpha, _ = _parts(model, variables, x)
  np.testing.assert_allclose(model.apply(variables, f, method=CoSegNet.attend), alpha, rtol=1e-5)
  attended = model.apply(variables, f[:1], alpha[1:],
                         method=lambda m, f, a: m.learner.attend(f, a))
  np.testing.assert_allclose(attended, f[:1] * alpha[1][None, None, None], rtol=1e-6)


def test_fca_equations():
  """Eq. (5)–(7): alpha_C = sigmoid(W_f (alpha_A + alpha_B) + b_f), same for both images."""
  model, variables = small_model("fca")
  x = images(3)
  f, alpha, params = _parts(model, variables, x)
  fused = jax.nn.sigmoid((alpha[0] + alpha[1]) @ params["fuse"]["kernel"] + params["fuse"]["bias"])
  for own, other in ((0, 1), (1, 0)):
    got = model.apply(variables, alpha[own:own + 1], alpha[other:other + 1],
                      method=CoSegNet.combine)
    np.testing.assert_allclose(got[0], fused, rtol=1e-5)


def test_csa_equations():
  """Eq. (10)–(13): f'_A = alpha^c_B * sigmoid(mean_c f_A) * f_A."""
  model, variables = small_model("csa")
  x = images(4)
  f, alpha, _ = _parts(model, variables, x)
  attended = model.apply(variables, f[:1], alpha[1:],
                         method=lambda m, f, a: m.learner.attend(f, a))
  spatial = jax.nn.sigmoid(f[:1].mean(axis=-1, keepdims=True))
  np.testing.assert_allclose(attended, alpha[1][None, None, None] * spatial * f[:1], rtol=1e-5)
  # the pair forward sows alpha^s of both images; the model's spatial_attention is the same map
  _, state = model.apply(variables, x[:1], x[1:], mutable=["intermediates"])
  sown, = state["intermediates"]["learner"]["spatial_attention"]
  both = jax.nn.sigmoid(f.mean(axis=-1, keepdims=True))
  np.testing.assert_allclose(sown, both, rtol=1e-5)
  np.testing.assert_allclose(model.apply(variables, f, method=CoSegNet.spatial_attention), both,
                             rtol=1e-5)


def test_none_ignores_the_other_image(small):
  model, variables = small
  x = images(5, n=3)
  if model.attention == "none":
    a1, _ = model.apply(variables, x[:1], x[1:2])
    a2, _ = model.apply(variables, x[:1], x[2:3])
    np.testing.assert_allclose(a1, a2, rtol=1e-5, atol=1e-6)
    assert "learner" not in variables["params"]
  else:
    a1, _ = model.apply(variables, x[:1], x[1:2])
    a2, _ = model.apply(variables, x[:1], x[2:3])
    assert np.abs(np.asarray(a1) - np.asarray(a2)).max() > 1e-6


def test_swap_symmetry(small):
  """Swapping the inputs swaps the outputs (shared weights, Siamese)."""
  model, variables = small
  x = images(6)
  a, b = model.apply(variables, x[:1], x[1:])
  b2, a2 = model.apply(variables, x[1:], x[:1])
  np.testing.assert_allclose(a, a2, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(b, b2, rtol=1e-5, atol=1e-5)


def test_train_mode_uses_dropout_and_updates_batch_stats():
  model = CoSegNet("ca", dropout_rate=0.5, **SMALL)
  variables = init_variables(model, jax.random.key(0), SIZE)
  x = images(7)
  run = lambda seed: model.apply(variables, x[:1], x[1:], train=True, mutable=["batch_stats"],
                                 rngs={"dropout": jax.random.key(seed)})
  (out1, _), new = run(1)
  (out2, _), _ = run(2)
  assert np.abs(np.asarray(out1) - np.asarray(out2)).max() > 1e-4
  old = variables["batch_stats"]["decoder"]["bn_0"]["mean"]
  assert np.abs(np.asarray(new["batch_stats"]["decoder"]["bn_0"]["mean"] - old)).max() > 0


def test_upsample_is_nearest():
  x = jnp.arange(4.0).reshape(1, 2, 2, 1)
  np.testing.assert_array_equal(upsample2x(x)[0, :, :, 0],
                                [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]])


@pytest.mark.parametrize("height, width", [(3, 5), *(pytest.param(*s, marks=pytest.mark.slow)
                                                    for s in [(1, 1), (8, 8)])])
def test_upsample_conv_equals_conv_of_the_upsampled_map(height, width):
  rng = np.random.default_rng(height)
  x = jnp.asarray(rng.normal(size=(2, height, width, 6)), jnp.float32)
  module = UpsampleConv(4)
  variables = module.init(jax.random.key(0), x)
  variables = jax.tree.map(lambda v: v + 0.1, variables)  # a non-zero bias
  plain = nn.Conv(4, (3, 3), padding=((1, 1), (1, 1)))
  assert jax.tree.map(jnp.shape, plain.init(jax.random.key(0), upsample2x(x))) == \
      jax.tree.map(jnp.shape, variables)  # the same parameters, so checkpoints carry over
  ours = lambda v, x: module.apply(v, x)
  theirs = lambda v, x: plain.apply(v, upsample2x(x))
  np.testing.assert_allclose(ours(variables, x), theirs(variables, x), rtol=1e-5, atol=1e-5)
  cotangent = jnp.asarray(rng.normal(size=(2, 2 * height, 2 * width, 4)), jnp.float32)
  grads = [jax.grad(lambda v, x: (f(v, x) * cotangent).sum(), (0, 1))(variables, x)
           for f in (ours, theirs)]
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4), *grads)


@pytest.mark.parametrize("shape, message", [
    ((1, 48, 64, 3), "multiples of 32"),
    ((1, 64, 64, 1), r"\[B, H, W, 3\]"),
    ((64, 64, 3), r"\[B, H, W, 3\]"),
])
def test_bad_image_shapes_are_named(small, shape, message):
  model, variables = small
  x = jnp.zeros(shape)
  with pytest.raises(ValueError, match=message):
    model.apply(variables, x, x)


def test_mismatched_pair_and_unknown_attention():
  model = CoSegNet("ca", **SMALL)
  variables = init_variables(model, jax.random.key(0), SIZE)
  with pytest.raises(ValueError, match="same shape"):
    model.apply(variables, jnp.zeros((1, 64, 64, 3)), jnp.zeros((1, 32, 64, 3)))
  with pytest.raises(ValueError, match="attention must be one of"):
    init_variables(CoSegNet("se"), jax.random.key(0), 32)


def test_preprocess_matches_torchvision_formula():
  x = np.array([[[[0, 128, 255]]]], np.uint8)
  expected = (np.array([0, 128, 255]) / 255 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
  np.testing.assert_allclose(preprocess(x)[0, 0, 0], expected, rtol=1e-6)
  with pytest.raises(ValueError, match="uint8"):
    preprocess(x.astype(np.float32))


def test_model_takes_uint8_images_as_their_normalised_floats():
  model = CoSegNet("fca", **SMALL)
  variables = init_variables(model, jax.random.key(0), SIZE)
  rng = np.random.RandomState(0)
  a, b = (rng.randint(0, 256, (1, SIZE, SIZE, 3)).astype(np.uint8) for _ in range(2))
  raw = model.apply(variables, a, b)
  normalised = model.apply(variables, preprocess(a), preprocess(b))
  np.testing.assert_allclose(raw, normalised, atol=1e-5)
  cast = model.apply(variables, a.astype(np.float32), b.astype(np.float32))  # 0..255 as is
  assert np.abs(np.asarray(raw[0]) - np.asarray(cast[0])).max() > 1e-3


@pytest.mark.slow
def test_light_encoder_preset_follows_vgg_bn_names():
  """convs_per_stage=1 with BatchNorm: names like torchvision's vgg11_bn (conv N, BN N+1)."""
  model = CoSegNet("csa", encoder_widths=(8, 8, 16, 16, 16), encoder_convs=(1, 1, 1, 1, 1),
                   encoder_batch_norm=True, decoder_widths=(16, 8, 8, 8))
  variables = init_variables(model, jax.random.key(0), SIZE)
  assert sorted(variables["params"]["encoder"]) == sorted(
      [f"features_{i}" for i in (0, 4, 8, 12, 16)] + [f"features_{i}" for i in (1, 5, 9, 13, 17)])
  x = images(8)
  _, updated = model.apply(variables, x[:1], x[1:], train=True, mutable=["batch_stats"],
                           rngs={"dropout": jax.random.key(1)})
  before = variables["batch_stats"]["encoder"]["features_1"]["mean"]
  assert np.abs(np.asarray(updated["batch_stats"]["encoder"]["features_1"]["mean"] - before)).max() > 0
  f = model.apply(variables, x, method=CoSegNet.encode)
  assert f.shape == (2, SIZE // 32, SIZE // 32, 16)


@functools.cache
def skip_model(skip="pool4", attention="fca"):
  """A small CoSegNet with one of the recipe's skips, and its variables."""
  model = CoSegNet(attention, skip=skip, **SMALL)
  return model, init_variables(model, jax.random.key(0), SIZE)


@pytest.mark.parametrize("skip", ["pool4", "pool3"])
def test_skip_encodes_its_maps_and_splits_like_the_pair_forward(skip):
  model, variables = skip_model(skip)
  x = images(1)
  f = model.apply(variables, x, method=CoSegNet.encode)
  assert set(f) == {"pool5", *SKIPS[skip]}
  for stage, stride in (("pool5", 32), ("pool4", 16), ("pool3", 8)):
    assert stage not in f or f[stage].shape == (2, SIZE // stride, SIZE // stride, 16)
  logits = model.apply(variables, x[:1], x[1:])
  alpha = model.apply(variables, f, method=CoSegNet.attend)
  for i in (0, 1):
    applied = model.apply(variables, alpha[i:i + 1], alpha[1 - i:2 - i], method=CoSegNet.combine)
    one = jax.tree.map(lambda a, i=i: a[i:i + 1], f)
    expected = model.apply(variables, one, applied, method=CoSegNet.decode)
    np.testing.assert_allclose(logits[i], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("skip", ["pool4", "pool3"])
def test_each_skip_is_used_and_attended_by_the_decoders_attention(skip):
  """Each skipped map changes the output, and with everything else zeroed (FCA attends
  pool5 to zero) what is left of the image, that map, still follows alpha: it is attended."""
  model, variables = skip_model(skip)
  f = model.apply(variables, images(2, n=1), method=CoSegNet.encode)
  alpha = jax.random.uniform(jax.random.key(3), (1, 16))
  decode = lambda f, a: np.asarray(model.apply(variables, f, a, method=CoSegNet.decode))
  nothing = jax.tree.map(jnp.zeros_like, f)
  for tap in SKIPS[skip]:
    assert np.abs(decode(f, alpha) - decode({**f, tap: nothing[tap]}, alpha)).max() > 1e-4
    only_tap = {**nothing, tap: f[tap]}
    assert np.abs(decode(only_tap, alpha) - decode(only_tap, 1 - alpha)).max() > 1e-4
  # alpha scales the features, nothing else
  np.testing.assert_allclose(decode(nothing, alpha), decode(nothing, 1 - alpha), atol=1e-6)


def test_bad_skips_are_refused():
  x = images(0)
  with pytest.raises(ValueError, match=r"skip must be one of .*got skip='pool2'"):
    CoSegNet("fca", skip="pool2", **SMALL).init(jax.random.key(0), x[:1], x[1:])
  with pytest.raises(ValueError, match="decoder_type='reference'"):
    CoSegNet("ca_mlp", decoder_type="reference", skip="pool4").init(
        jax.random.key(0), x[:1], x[1:])
