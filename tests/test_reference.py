"""The authors' released architecture ("reference"): checkpoint conversion against the twin."""

import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="optional extra: pip install 'coseg_jax[torch]'")

# pylint: disable=g-import-not-at-top
from coseg_jax import init_variables, segment_group
from coseg_jax.apps import port_weights
from coseg_jax.interop import torch_twin as tt
from coseg_jax import weights
from parity_utils import SIZE, TOL, WIDTHS, grad_errors, images, rel_err, train_step
# pylint: enable=g-import-not-at-top

jax.config.update("jax_default_matmul_precision", "float32")

MODEL = weights.reference_model(encoder_widths=WIDTHS)


def random_twin(seed):
  """A reference twin with He-normal weights and random biases, BatchNorm affines and
  statistics (torch's defaults would hide swapped tensors), in eval mode."""
  torch.manual_seed(seed)
  twin = tt.ReferenceCoSegNetTorch(WIDTHS, classifier_hidden=8)
  with torch.no_grad():
    for module in twin.modules():
      if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
        torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        module.bias.normal_(0, 0.1)
      elif isinstance(module, torch.nn.BatchNorm2d):
        module.weight.uniform_(0.5, 1.5)
        module.bias.normal_(0, 0.1)
        module.running_mean.normal_(0, 0.1)
        module.running_var.uniform_(0.5, 1.5)
  return twin.eval()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
  """(twin, path of its torch.save'd state_dict with DataParallel's ``module.`` prefix)."""
  twin = random_twin(seed=0)
  path = tmp_path_factory.mktemp("reference") / "epoch1iter5000.pkl"
  torch.save({"module." + key: value for key, value in twin.state_dict().items()}, path)
  return twin, path


@pytest.fixture(scope="module")
def variables(checkpoint):
  return init_variables(MODEL, jax.random.key(0), SIZE, reference_checkpoint=checkpoint[1])


def test_checkpoint_holds_the_released_layout(checkpoint):
  state = torch.load(checkpoint[1], weights_only=True)
  for key in ("module.pretrained_model.features.28.bias",
              "module.pretrained_model.classifier.6.weight", "module.features_map.0.weight",
              "module.mlp1.weight", "module.mlp2.bias",
              "module.dec.model.0.model.1.model.0.conv.weight",
              "module.dec.model.0.model.0.model.1.norm.running_var",
              "module.dec.model.10.norm.num_batches_tracked", "module.dec.model.11.conv.bias"):
    assert key in state
  assert not any(key.startswith("module.dec.model.11.norm") for key in state)


def test_pair_logits_match(checkpoint, variables):
  twin = checkpoint[0]
  a, b = np.split(images(4, seed=2), 2)
  with torch.no_grad():
    expected = twin(tt.to_nchw(a), tt.to_nchw(b))
  for logits, ref in zip(jax.jit(MODEL.apply)(variables, a, b), expected):
    assert np.abs(tt.to_nhwc(ref)).max() > 0.1  # not a degenerate (near-constant) output
    assert rel_err(logits, tt.to_nhwc(ref)) < TOL


@pytest.mark.parametrize("reduce,leave_one_out", [("mean", False), ("min", False), ("mean", True)])
def test_group_matches(checkpoint, variables, reduce, leave_one_out):
  """("mean", False) is the released code's group mode: the mean of all N attentions."""
  group = images(3, seed=3)
  probs = segment_group(MODEL, variables, group, reduce=reduce, chunk_size=2,
                        leave_one_out=leave_one_out)
  expected = tt.segment_group(checkpoint[0], tt.to_nchw(group), reduce, leave_one_out).numpy()
  assert rel_err(probs, expected) < TOL


@pytest.mark.slow
def test_train_step_matches(checkpoint, variables):
  """Fine-tuning: loss, gradients and BatchNorm running means after one step (float64)."""
  got, ref = train_step(MODEL, variables, checkpoint[0])
  assert rel_err(got["loss"], ref["loss"]) < TOL
  assert sorted(got["grads"]) == sorted(ref["grads"])
  errors = grad_errors(got["grads"], ref["grads"])
  assert max(errors.values()) < TOL, errors
  for key in ref["stats"]:
    if key.endswith("running_mean"):
      assert rel_err(got["stats"][key], ref["stats"][key]) < TOL, key


def test_variables_round_trip_through_the_twin(checkpoint, variables):
  twin = tt.ReferenceCoSegNetTorch(WIDTHS, classifier_hidden=8).load_variables(variables)
  back = tt.state_dict_to_variables(twin.state_dict(), MODEL)
  jax.tree.map(np.testing.assert_array_equal, back, jax.tree.map(np.asarray, variables))
  reference = checkpoint[0].state_dict()
  for key, value in twin.state_dict().items():
    if not key.startswith("pretrained_model.classifier."):
      assert torch.equal(value, reference[key]), key


@pytest.mark.slow
def test_port_cli_writes_a_torch_free_npz(checkpoint, variables, tmp_path, monkeypatch):
  out = tmp_path / "reference_ca.npz"
  monkeypatch.setattr(weights, "reference_model", lambda: MODEL)  # the test's narrow VGG16
  port_weights.main(["--format=reference", str(checkpoint[1]), str(out)])
  with np.load(out) as data:
    assert not any(key.startswith(("module.", "pretrained_model.")) for key in data.files)
  flat = tmp_path / "flat.npz"
  code = f"""if True:
      import sys; sys.modules["torch"] = None  # the .npz must load without torch
      import numpy as np
      from flax import traverse_util
      from coseg_jax import weights
      model = weights.reference_model(encoder_widths={WIDTHS})
      v = traverse_util.flatten_dict(weights.load_reference_checkpoint({str(out)!r}, model))
      np.savez({str(flat)!r}, **{{"/".join(k): x for k, x in v.items()}})
      """
  subprocess.run([sys.executable, "-c", code], check=True)
  with np.load(flat) as data:
    loaded = {tuple(key.split("/")): data[key] for key in data.files}
  expected = weights.flatten_variables(jax.tree.map(np.asarray, variables))
  assert sorted(loaded) == sorted((c,) + p for c, p in expected)
  for (collection, path), value in expected.items():
    np.testing.assert_array_equal(loaded[(collection,) + path], value)


def test_mismatched_checkpoint_names_every_bad_key(checkpoint, tmp_path):
  state = torch.load(checkpoint[1], weights_only=True)
  del state["module.mlp2.bias"]
  state["module.dec.model.12.conv.weight"] = torch.zeros(2, 2, 7, 7)
  state["module.dec.model.2.conv.weight"] = torch.zeros(32, 64, 3, 3)
  path = tmp_path / "bad.pkl"
  torch.save(state, path)
  with pytest.raises(weights.WeightFileError) as error:
    weights.load_reference_checkpoint(path, MODEL)
  message = str(error.value)
  for part in (str(path), "missing keys (1): mlp2.bias",
               "unexpected keys (1): dec.model.12.conv.weight",
               "dec.model.2.conv.weight: file has (32, 64, 3, 3), expected (32, 64, 5, 5)"):
    assert part in message


def test_paper_checkpoint_is_rejected(tmp_path):
  path = tmp_path / "paper_ca.pth"
  torch.save(tt.CoSegNetTorch("ca", WIDTHS).state_dict(), path)
  with pytest.raises(weights.WeightFileError) as error:
    weights.load_reference_checkpoint(path, MODEL)
  message = str(error.value)
  assert "missing keys (86): dec.model.0.model.0.model.0.conv.bias" in message
  assert "unexpected keys (54): decoder.bn_0.bias" in message


def test_full_size_layout_matches_the_release():
  """Default (VGG16-wide) twin on torch's meta device: the released keys and shapes."""
  with torch.device("meta"):
    state = tt.ReferenceCoSegNetTorch().state_dict()
  shapes = {key: tuple(value.shape) for key, value in state.items()}
  for key, shape in {"pretrained_model.classifier.0.weight": (4096, 25088),
                     "features_map.28.weight": (512, 512, 3, 3), "mlp1.weight": (4096, 512),
                     "mlp2.weight": (512, 4096),
                     "dec.model.0.model.1.model.1.conv.weight": (512, 512, 3, 3),
                     "dec.model.2.conv.weight": (256, 512, 5, 5), "dec.model.10.norm.weight": (16,),
                     "dec.model.11.conv.weight": (2, 16, 7, 7)}.items():
    assert shapes[key] == shape, key
  full_size = weights.flatten_variables(weights.variable_shapes(weights.reference_model()))
  expected = {weights.torch_key(weights.reference_module_name, c, p): weights.torch_shape(x.shape)
              for (c, p), x in full_size.items()}
  used = {key: shape for key, shape in shapes.items()
          if not key.startswith("pretrained_model.") and "num_batches" not in key}
  assert used == expected


def test_reference_decoder_needs_64_pixels():
  with pytest.raises(ValueError, match="at least 64x64"):
    weights.variable_shapes(MODEL, image_size=32)


def test_unknown_decoder_type_is_named():
  with pytest.raises(ValueError, match="decoder_type must be one of .*'upernet'"):
    weights.variable_shapes(weights.CoSegNet(decoder_type="upernet"))


def test_segment_cli_takes_a_released_checkpoint(checkpoint, variables, tmp_path, monkeypatch):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from coseg_jax.apps import segment  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(weights, "reference_model", lambda: MODEL)  # the test's narrow VGG16
  photos = tmp_path / "photos"
  photos.mkdir()
  photos_uint8 = np.random.default_rng(4).integers(0, 256, (3, SIZE, SIZE, 3), dtype=np.uint8)
  for i, uint8 in enumerate(photos_uint8):
    Image.fromarray(uint8).save(photos / f"p{i}.png")
  segment.main([f"--checkpoint={checkpoint[1]}", f"--images={photos}",
                f"--out={tmp_path / 'out'}", f"--image_size={SIZE}"])
  masks = [np.asarray(Image.open(tmp_path / "out" / f"p{i}_mask.png")) > 127 for i in range(3)]
  expected = segment_group(MODEL, variables, photos_uint8) > 0.5
  np.testing.assert_array_equal(np.stack(masks), expected)


def test_fine_tuning_starts_from_the_released_checkpoint(checkpoint, variables):
  from coseg_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  from coseg_jax import models  # pylint: disable=g-import-not-at-top
  from coseg_jax.training import trainer as train_lib  # pylint: disable=g-import-not-at-top
  config = config_lib.load_file(pathlib.Path(__file__).parents[1] / "configs" / "reference_ca.py")
  config.model.encoder_widths = WIDTHS
  config.data.image_size = SIZE
  config.data.dataset = "synthetic"  # no data is read here
  config.init.reference_checkpoint = str(checkpoint[1])
  config_lib.validate(config)
  state = train_lib.create_state(config, models.build(config.model), jax.random.key(0))
  jax.tree.map(np.testing.assert_array_equal, state.params, variables["params"])
  jax.tree.map(np.testing.assert_array_equal, state.batch_stats, variables["batch_stats"])
