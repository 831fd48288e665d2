"""CoSegNet against its PyTorch twin (``coseg_jax.interop.torch_twin``): same weights, same outputs."""

import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="optional extra: pip install 'coseg_jax[torch]'")

# pylint: disable=g-import-not-at-top
from coseg_jax import CoSegNet, load_torchvision_vgg16, preprocess, segment_group
from coseg_jax.interop import torch_twin as tt
from coseg_jax.models.vgg import VGG16Encoder
from coseg_jax.weights import WeightFileError, strip_prefix, variable_shapes
from parity_utils import SIZE, TOL, WIDTHS, grad_errors, images, rel_err, train_step
from tiny import attentions
# pylint: enable=g-import-not-at-top

jax.config.update("jax_default_matmul_precision", "float32")

DECODER_WIDTHS = (32, 16, 16, 8)


def random_variables(model, seed):
  """Random variables of ``model``: He-normal kernels (activations keep their scale through
  13 ReLUs), random biases, BatchNorm scales and statistics, so that a swapped or
  transposed tensor changes the output."""
  rng = np.random.default_rng(seed)
  draws = {"kernel": lambda s: rng.normal(0, np.sqrt(2 / np.prod(s[:-1])), s),
           "bias": lambda s: rng.normal(0, 0.1, s), "scale": lambda s: rng.uniform(0.5, 1.5, s),
           "mean": lambda s: rng.normal(0, 0.1, s), "var": lambda s: rng.uniform(0.5, 1.5, s)}
  return jax.tree_util.tree_map_with_path(
      lambda path, x: draws[path[-1].key](x.shape).astype(np.float32), variable_shapes(model))


@pytest.fixture(scope="module", params=attentions())
def nets(request):
  """(flax model, its random variables, the twin loaded with them in eval mode)."""
  model = CoSegNet(request.param, encoder_widths=WIDTHS, decoder_widths=DECODER_WIDTHS, dropout_rate=0.0)
  variables = random_variables(model, seed=1)
  twin = tt.CoSegNetTorch(request.param, WIDTHS, DECODER_WIDTHS, dropout_rate=0.0)
  return model, variables, twin.load_variables(variables).eval()


def test_pair_logits_match(nets):
  model, variables, twin = nets
  a, b = np.split(images(4, seed=2), 2)  # a batch of two pairs
  with torch.no_grad():
    expected = twin(tt.to_nchw(a), tt.to_nchw(b))
  for logits, ref in zip(jax.jit(model.apply)(variables, a, b), expected):
    assert np.abs(tt.to_nhwc(ref)).max() > 0.1  # not a degenerate (near-constant) output
    assert rel_err(logits, tt.to_nhwc(ref)) < TOL


@pytest.mark.parametrize("leave_one_out", [False, True])
@pytest.mark.parametrize("reduce", ["mean", "min"])
def test_group_probs_match(nets, reduce, leave_one_out):
  model, variables, twin = nets
  group = images(3, seed=3)
  probs = segment_group(model, variables, group, reduce=reduce, chunk_size=2,
                        leave_one_out=leave_one_out)
  expected = tt.segment_group(twin, tt.to_nchw(group), reduce, leave_one_out).numpy()
  assert rel_err(probs, expected) < TOL


def test_group_settings_are_distinguishable():
  """The group comparison above can fail: each setting changes the twin's output."""
  twin = tt.CoSegNetTorch("ca", WIDTHS, DECODER_WIDTHS).eval()
  twin.load_variables(random_variables(CoSegNet("ca", encoder_widths=WIDTHS, decoder_widths=DECODER_WIDTHS), seed=4))
  group = tt.to_nchw(images(3, seed=3))
  outputs = [tt.segment_group(twin, group, reduce, loo).numpy()
             for reduce in ("mean", "min") for loo in (False, True)]
  for i, x in enumerate(outputs):
    for y in outputs[i + 1:]:
      assert rel_err(x, y) > 100 * TOL


@pytest.mark.slow
def test_train_step_matches(nets):
  """Loss, gradients and BatchNorm statistics after one training step (float64, see train_step)."""
  model, variables, twin = nets
  got, ref = train_step(model, variables, twin)
  assert rel_err(got["loss"], ref["loss"]) < TOL
  assert sorted(got["grads"]) == sorted(ref["grads"])
  errors = grad_errors(got["grads"], ref["grads"])
  assert max(errors.values()) < TOL, errors
  for i in range(len(DECODER_WIDTHS)):
    prefix, old = f"decoder.bn_{i}.", variables["batch_stats"]["decoder"][f"bn_{i}"]["var"]
    mean, var = (got["stats"][prefix + name] for name in ("running_mean", "running_var"))
    assert rel_err(mean, ref["stats"][prefix + "running_mean"]) < TOL
    # torch updates running_var with the unbiased batch variance, flax with the biased one.
    n = 2 * (SIZE // 32 * 2 ** (i + 1)) ** 2  # 2 images of h * w pixels
    unbiased = 0.9 * old + (var - 0.9 * old) * n / (n - 1)
    np.testing.assert_allclose(ref["stats"][prefix + "running_var"], unbiased, rtol=1e-6)


def test_converters_round_trip(nets):
  model, variables, twin = nets
  back = tt.state_dict_to_variables(tt.variables_to_state_dict(variables), model)
  assert jax.tree.structure(back) == jax.tree.structure(variables)
  jax.tree.map(np.testing.assert_array_equal, back, variables)
  state = twin.state_dict()
  again = tt.variables_to_state_dict(tt.state_dict_to_variables(state, model))
  assert sorted(again) == sorted(state)
  for key, value in state.items():
    assert torch.equal(again[key], value), key


def test_state_dict_errors_name_every_bad_key():
  state = tt.CoSegNetTorch("fca", WIDTHS, DECODER_WIDTHS).state_dict()
  del state["learner.fuse.bias"]
  state["decoder.extra.weight"] = torch.zeros(1)
  state["decoder.conv_0.weight"] = torch.zeros(3, 3, 3, 3)
  with pytest.raises(WeightFileError) as error:
    tt.state_dict_to_variables(state, CoSegNet("fca", encoder_widths=WIDTHS, decoder_widths=DECODER_WIDTHS), source="bad.pth")
  message = str(error.value)
  for part in ("bad.pth", "missing keys (1): learner.fuse.bias", "decoder.extra.weight",
               "decoder.conv_0.weight: file has (3, 3, 3, 3), expected (32, 64, 3, 3)"):
    assert part in message


def test_state_dict_accepts_data_parallel_prefix():
  twin = tt.CoSegNetTorch("ca", WIDTHS, DECODER_WIDTHS)
  model = CoSegNet("ca", encoder_widths=WIDTHS, decoder_widths=DECODER_WIDTHS)
  wrapped = {"module." + key: value for key, value in twin.state_dict().items()}
  jax.tree.map(np.testing.assert_array_equal, tt.state_dict_to_variables(wrapped, model),
               tt.state_dict_to_variables(twin.state_dict(), model))


def test_real_vgg16_pool5_matches(data_dir, vgg16_path):
  image = data_dir / "pascal_voc10_coseg" / "images" / "Cat" / "img_1001.jpg"
  if not image.is_file():
    pytest.skip(f"PASCAL co-segmentation image not found: {image}")
  from PIL import Image  # pylint: disable=g-import-not-at-top
  rgb = np.asarray(Image.open(image).convert("RGB").resize((96, 96), Image.BILINEAR))
  x = preprocess(rgb[None])
  features = VGG16Encoder().apply({"params": load_torchvision_vgg16(vgg16_path)}, x)
  twin = tt.vgg16_features()
  twin.load_state_dict(strip_prefix(torch.load(vgg16_path, weights_only=True), "features."))
  with torch.no_grad():
    expected = tt.to_nhwc(twin(tt.to_nchw(x)))
  assert features.shape == expected.shape == (1, 3, 3, 512)
  assert expected.max() > 1.0
  assert rel_err(features, expected) < TOL


@pytest.mark.slow
def test_import_coseg_jax_does_not_import_torch():
  code = ("import sys, coseg_jax, coseg_jax.weights, coseg_jax.apps.port_weights; "
          "assert 'torch' not in sys.modules, 'torch was imported'")
  subprocess.run([sys.executable, "-c", code], check=True, cwd=pathlib.Path(__file__).parents[1])
