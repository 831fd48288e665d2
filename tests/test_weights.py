"""torchvision VGG16 weights: porting, validation errors, the torch-free .npz path."""

import jax
import numpy as np
import pytest

from coseg_jax import CoSegNet, init_variables, load_torchvision_vgg16
from coseg_jax.apps import port_weights
from coseg_jax.weights import WeightFileError, expected_vgg16_shapes, vgg16_params_from_state_dict


def fake_vgg16_state(seed=0, classifier=True):
  rng = np.random.RandomState(seed)
  state = {k: rng.randn(*s).astype(np.float32) for k, s in expected_vgg16_shapes().items()}
  if classifier:
    state["classifier.0.weight"] = rng.randn(8, 8).astype(np.float32)
  return state


def test_oihw_to_hwio():
  state = fake_vgg16_state()
  params = vgg16_params_from_state_dict(state)
  np.testing.assert_array_equal(params["features_5"]["kernel"][1, 2, 3, 4],
                                state["features.5.weight"][4, 3, 1, 2])
  assert params["features_0"]["kernel"].shape == (3, 3, 3, 64)
  assert "classifier" not in str(params.keys())


def test_wrong_state_dicts_name_the_keys():
  state = fake_vgg16_state()
  del state["features.28.bias"]
  state["features.5.weight"] = state["features.5.weight"][:, :, :2]
  state["layer1.0.conv1.weight"] = np.zeros(3, np.float32)
  with pytest.raises(WeightFileError) as error:
    vgg16_params_from_state_dict(state, source="resnet.pth")
  message = str(error.value)
  assert "resnet.pth" in message and "features.28.bias" in message
  assert "layer1.0.conv1.weight" in message
  assert "features.5.weight: file has (128, 64, 2, 3), expected (128, 64, 3, 3)" in message


def test_vgg16_bn_is_recognised():
  state = {"features.0.weight": np.zeros((64, 3, 3, 3), np.float32),
           "features.1.running_mean": np.zeros(64, np.float32)}
  with pytest.raises(WeightFileError, match="vgg16_bn"):
    vgg16_params_from_state_dict(state)


def test_npz_roundtrip_without_torch(tmp_path):
  state = fake_vgg16_state(1, classifier=False)
  path = tmp_path / "vgg.npz"
  np.savez(path, **state)
  params = load_torchvision_vgg16(path)
  np.testing.assert_array_equal(params["features_28"]["bias"], state["features.28.bias"])


def test_missing_and_corrupt_files(tmp_path):
  with pytest.raises(FileNotFoundError, match="nope.pth"):
    load_torchvision_vgg16(tmp_path / "nope.pth")
  bad = tmp_path / "bad.npz"
  bad.write_bytes(b"not a zip")
  with pytest.raises(WeightFileError, match="bad.npz"):
    load_torchvision_vgg16(bad)


@pytest.mark.slow
def test_init_variables_rejects_weights_for_another_width(tmp_path):
  path = tmp_path / "vgg.npz"
  np.savez(path, **fake_vgg16_state(2, classifier=False))
  model = CoSegNet("ca", encoder_widths=(8, 8, 16, 16, 16), decoder_widths=(8, 8, 8, 8))
  with pytest.raises(WeightFileError, match="shape mismatches"):
    init_variables(model, jax.random.key(0), 32, vgg16_weights=path)


def test_real_weights_port_and_load(tmp_path, vgg16_path):
  pytest.importorskip("torch", reason="reading a .pth needs torch")
  out = tmp_path / "vgg16.npz"
  port_weights.main([str(vgg16_path), str(out)])
  from_pth = load_torchvision_vgg16(vgg16_path)
  from_npz = load_torchvision_vgg16(out)
  jax.tree.map(np.testing.assert_array_equal, from_pth, from_npz)
  model = CoSegNet("csa")
  variables = init_variables(model, jax.random.key(0), 32, vgg16_weights=out)
  np.testing.assert_array_equal(variables["params"]["encoder"]["features_0"]["kernel"],
                                from_pth["features_0"]["kernel"])


def test_truncated_pth(tmp_path, vgg16_path):
  pytest.importorskip("torch", reason="reading a .pth needs torch")
  cut = tmp_path / "cut.pth"
  cut.write_bytes(vgg16_path.read_bytes()[:100000])
  with pytest.raises(WeightFileError, match="cut.pth"):
    load_torchvision_vgg16(cut)
