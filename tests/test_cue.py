"""The correspondence cue (``model.cue="correlation"``, coseg_jax/models/correspondence.py):
it finds what two photos share, and its group form is the pair's, O(N) and chunk-proof."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from coseg_jax import CoSegNet, config as config_lib, init_variables, models, preprocess
from coseg_jax import segment_group, segment_pairwise
from coseg_jax.data import images as image_files, resize
from coseg_jax.models import correspondence

from bench.common import compile_counts
from test_group import pair_probs, sharpened, uint8_images
from tiny import REPO, SIZE, SMALL


@pytest.fixture(scope="module")
def cued():
  model = CoSegNet("fca", cue="correlation", **SMALL)
  return model, sharpened(init_variables(model, jax.random.key(1), SIZE))


# ----------------------------------------------------------------------------- (a) real photos
REAL_SIZE = 256
CELL = 32  # pool5 cells of REAL_SIZE px


def load_object(data_dir, name, index=0):
  """A PASCAL photo of class ``name`` and its bool mask."""
  folder = data_dir / "pascal_voc10_coseg"
  path = sorted((folder / "images" / name).glob("*.jpg"))[index]
  return (image_files.read_image(path),
          image_files.read_mask(folder / "masks" / name / (path.stem + ".png")))


def paste(base, labels, obj, side, top, left, value):
  """Pastes object ``obj`` = (image, mask), its longer side ``side`` of S, at (top, left)."""
  image, mask = obj
  rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
  image = image[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
  mask = mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
  scale = side * REAL_SIZE / max(mask.shape)
  h, w = (min(int(s * scale), REAL_SIZE - corner) for s, corner in zip(mask.shape, (top, left)))
  image = np.asarray(Image.fromarray(image).resize((w, h), Image.Resampling.BILINEAR))
  mask = np.asarray(Image.fromarray(mask.astype(np.uint8)).resize((w, h),
                                                                  Image.Resampling.NEAREST)) > 0
  base[top:top + h, left:left + w][mask] = image[mask]
  labels[top:top + h, left:left + w][mask] = value


def cells(labels, value):
  """pool5 cells more than half covered by label ``value``."""
  side = REAL_SIZE // CELL
  return (labels == value).reshape(side, CELL, side, CELL).mean((1, 3)) > 0.5


@pytest.fixture(scope="module")
def real_model(vgg16_path):
  model = CoSegNet("fca", cue="correlation")
  return model, init_variables(model, jax.random.key(0), REAL_SIZE, vgg16_weights=vgg16_path)


@pytest.mark.parametrize("shared, other, backgrounds", [("Cow", "Bus", ("Boat", "Bird")),
                                                        ("Cat", "Car", ("Aero", "Boat"))])
def test_the_cue_finds_the_shared_object_not_a_salient_other(data_dir, real_model, shared,
                                                             other, backgrounds):
  """Image A: photo 1 of one class, the shared object top left, a non-shared object bottom
  right; image B: photo 2 of another class, the shared object elsewhere and larger. With
  ImageNet VGG16 features and the cue untrained, A's cue is high on the shared object and
  low on the other one."""
  model, variables = real_model
  shared_object, other_object = load_object(data_dir, shared), load_object(data_dir, other)
  a, b = (resize.resize_image(load_object(data_dir, name, i)[0], REAL_SIZE).copy()
          for i, name in ((1, backgrounds[0]), (2, backgrounds[1])))
  labels_a, labels_b = (np.zeros((REAL_SIZE,) * 2, np.uint8) for _ in range(2))
  paste(a, labels_a, shared_object, 0.45, 20, 10, 1)
  paste(a, labels_a, other_object, 0.45, 130, 130, 2)
  paste(b, labels_b, shared_object, 0.55, 90, 100, 1)
  f = model.apply(variables, preprocess(np.stack([a, b])), method=CoSegNet.encode)
  partner = model.apply(variables, f[1:], method=CoSegNet.prototypes)
  cue = model.apply(variables, f[:1], partner, method=CoSegNet.correspondence)
  picture = np.asarray(correspondence.cue_map(cue))[0]
  on_shared, on_other = picture[cells(labels_a, 1)], picture[cells(labels_a, 2)]
  assert on_shared.size and on_other.size
  assert on_shared.mean() > on_other.mean() + 0.15, (on_shared.mean(), on_other.mean())


# ----------------------------------------------------------------------------- (b)-(d) group form
def test_group_results_equal_for_any_chunk_size_and_compile_once(cued):
  model, variables = cued
  images = uint8_images(7, seed=11)
  reference = segment_group(model, variables, images, chunk_size=7)
  for chunk_size in (1, 2, 4):
    np.testing.assert_allclose(segment_group(model, variables, images, chunk_size=chunk_size),
                               reference, atol=2e-5)
  with compile_counts() as counts:
    for n in (2, 5, 7):
      segment_group(model, variables, images[:n], chunk_size=3)
  assert counts["encode_chunk"] == counts["decode_chunk"] == counts["prototype_chunk"] == 1


@pytest.mark.parametrize("leave_one_out", [False, True])
def test_pair_equals_group_of_two(cued, leave_one_out):
  model, variables = cued
  images = uint8_images(2, seed=12)
  probs = segment_group(model, variables, images, leave_one_out=leave_one_out)
  np.testing.assert_allclose(probs, pair_probs(model, variables, images), atol=1e-5)


def test_the_recipe_skips_travel_with_the_cue():
  """pool3 + pool4 skips (the recipe's) with the cue: pair == group of two, chunk-proof."""
  model = CoSegNet("fca", cue="correlation", skip="pool3", **SMALL)
  variables = sharpened(init_variables(model, jax.random.key(3), SIZE))
  images = uint8_images(3, seed=18)
  np.testing.assert_allclose(segment_group(model, variables, images[:2]),
                             pair_probs(model, variables, images[:2]), atol=1e-5)
  np.testing.assert_allclose(segment_group(model, variables, images, chunk_size=2),
                             segment_group(model, variables, images, chunk_size=3), atol=2e-5)


def test_a_group_of_one_uses_its_own_prototypes(cued):
  model, variables = cued
  image = uint8_images(1, seed=19)
  x = preprocess(image)
  logits, _ = model.apply(variables, x, x)  # the image paired with itself
  np.testing.assert_allclose(segment_group(model, variables, image),
                             jax.nn.softmax(logits)[..., 1], atol=2e-5)


def test_the_cue_changes_with_the_partner(cued):
  """Same image, other partner -> other map (the cue reads the partner)."""
  model, variables = cued
  images = uint8_images(3, seed=13)
  first = pair_probs(model, variables, images[[0, 1]])[0]
  second = pair_probs(model, variables, images[[0, 2]])[0]
  assert np.abs(first - second).max() > 1e-4


def test_leave_one_out_equals_a_loop_over_the_others():
  rng = np.random.default_rng(0)
  prototypes = rng.normal(size=(5, 3, 4)).astype(np.float32)
  expected = [np.mean([p for j, p in enumerate(prototypes) if j != i], axis=0) for i in range(5)]
  np.testing.assert_allclose(correspondence.reduce_prototypes(prototypes), expected, atol=1e-6)
  np.testing.assert_array_equal(correspondence.reduce_prototypes(prototypes[:1]), prototypes[:1])


def test_group_decodes_each_image_with_the_mean_of_the_others(cued):
  """segment_group == encode all, partner_i = mean over j != i of p_j, decode each."""
  model, variables = cued
  images = uint8_images(4, seed=14)
  f = model.apply(variables, preprocess(images), method=CoSegNet.encode)
  alpha = model.apply(variables, f, method=CoSegNet.attend)
  p = np.asarray(model.apply(variables, f, method=CoSegNet.prototypes))
  partner = np.stack([p[np.arange(4) != i].mean(0) for i in range(4)])
  mean = jnp.broadcast_to(alpha.mean(0, keepdims=True), alpha.shape)
  applied = model.apply(variables, mean, mean, method=CoSegNet.combine)
  logits = model.apply(variables, f, applied, partner=partner, method=CoSegNet.decode)
  np.testing.assert_allclose(segment_group(model, variables, images, chunk_size=3),
                             jax.nn.softmax(logits)[..., 1], atol=2e-5)


def test_encode_once_pairs_give_the_pair_forward(cued):
  model, variables = cued
  images = uint8_images(3, seed=15)
  np.testing.assert_allclose(segment_pairwise(model, variables, images, encode_once=True),
                             segment_pairwise(model, variables, images), atol=2e-5)


# ----------------------------------------------------------------------------- (e)-(f) the model
def test_the_recipe_config_has_the_cue():
  config = config_lib.load_file(REPO / "configs" / "cpu_frozen.py")
  assert models.build(config.model).cue == "correlation"


@pytest.mark.parametrize("name", ["default", "ca", "fca", "csa"])
def test_paper_configs_have_no_cue(name):
  config = config_lib.load_file(REPO / "configs" / f"{name}.py")
  model = models.build(config.model)
  assert model.cue == ""
  shapes = jax.eval_shape(lambda: init_variables(model.clone(**SMALL), jax.random.key(0), SIZE))
  assert "correlation" not in shapes["params"]
  assert shapes["params"]["decoder"]["conv_0"]["kernel"].shape[2] == SMALL["encoder_widths"][-1]


def test_config_key_builds_the_cue_and_is_checked():
  config = config_lib.default_config()
  config.model.cue = "correlation"
  assert models.build(config.model).cue == "correlation"
  config.model.cue = "mutual"
  with pytest.raises(ValueError, match="config.model.cue = 'mutual' is invalid"):
    config_lib.validate(config, training=False)
  with pytest.raises(ValueError, match="cue must be one of"):
    init_variables(CoSegNet("fca", cue="correlation", decoder_type="reference"),
                   jax.random.key(0), SIZE)


def test_gradients_reach_the_cue(cued):
  model, variables = cued
  x = preprocess(uint8_images(2, seed=16))
  f = model.apply(variables, x, method=CoSegNet.encode)

  def loss(params):
    logits_a, logits_b = model.apply({**variables, "params": params}, f,
                                     method=CoSegNet.decode_pair)
    return (logits_a[..., 1] ** 2).mean() + (logits_b[..., 0] ** 2).mean()

  grads = jax.grad(loss)(variables["params"])["correlation"]
  for name, g in [("slots", grads["slots"]["kernel"]), ("saliency", grads["saliency"])]:
    assert np.isfinite(g).all(), name
    assert np.abs(g).max() > 0, name


def test_a_bfloat16_model_with_the_cue_runs_both_protocols():
  model = CoSegNet("fca", cue="correlation", dtype=jnp.bfloat16, **SMALL)
  variables = init_variables(model, jax.random.key(2), SIZE)
  images = uint8_images(3, seed=17)
  probs = segment_group(model, variables, images, chunk_size=2)
  assert probs.dtype == np.float32 and np.isfinite(probs).all()
  assert np.isfinite(segment_pairwise(model, variables, images, encode_once=True)).all()


@pytest.mark.slow
def test_forward_mode_equals_reverse_mode_through_the_cue():
  from test_autodiff import test_forward_mode_equals_reverse_mode  # pylint: disable=g-import-not-at-top
  test_forward_mode_equals_reverse_mode("fca", {**SMALL, "cue": "correlation"})
