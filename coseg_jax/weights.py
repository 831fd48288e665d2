"""torchvision VGG16 state_dict -> encoder params, and variable initialisation.

A torchvision ``state_dict`` is read with torch (``pip install coseg_jax[torch]``); the
``.npz`` written by ``python -m coseg_jax.port_weights`` holds the same tensors and is
read with numpy alone, so training never needs torch.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np

from coseg_jax.models.vgg import VGG16_WIDTHS, conv_channels, conv_indices


class WeightFileError(ValueError):
  """A weight file that is unreadable or does not match the expected architecture."""


def read_state_dict(path):
  """Reads a ``torch.save``d state_dict (.pth/.pkl) or a ported ``.npz`` -> {key: np.ndarray}."""
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"weight file not found: {path}")
  if path.endswith(".npz"):
    try:
      with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}
    except Exception as e:  # zipfile/pickle/IO errors of every kind
      raise WeightFileError(f"could not read {path} as .npz: {e}") from e
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(f"reading {path} needs torch (pip install 'coseg_jax[torch]'); or convert "
                      "it once with `python -m coseg_jax.port_weights IN.pth OUT.npz` on a "
                      "machine with torch and load the .npz") from e
  try:
    state = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:
    raise WeightFileError(f"could not read {path} as a torch state_dict "
                          f"(truncated or not a torch.save file?): {e}") from e
  if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
    raise WeightFileError(f"{path} does not hold a state_dict (a dict of tensors), "
                          f"got {type(state).__name__}")
  return {key: value.detach().cpu().numpy() for key, value in state.items()}


def strip_prefix(state, prefix="module."):
  """Drops the ``module.`` prefix that ``nn.DataParallel`` adds to every key."""
  if state and all(key.startswith(prefix) for key in state):
    return {key[len(prefix):]: value for key, value in state.items()}
  return state


def expected_vgg16_shapes(widths=VGG16_WIDTHS):
  """torchvision key -> shape for the 13 convolutions of ``vgg16().features``."""
  shapes, in_channels = {}, 3
  for index, out_channels in zip(conv_indices(), conv_channels(widths)):
    shapes[f"features.{index}.weight"] = (out_channels, in_channels, 3, 3)
    shapes[f"features.{index}.bias"] = (out_channels,)
    in_channels = out_channels
  return shapes


def check_state_dict(state, expected, source, ignore_prefixes=()):
  """Raises WeightFileError listing missing, unexpected and mis-shaped keys, or returns None."""
  missing = sorted(set(expected) - set(state))
  unexpected = sorted(k for k in set(state) - set(expected) if not k.startswith(ignore_prefixes))
  wrong = sorted(f"{k}: file has {tuple(state[k].shape)}, expected {tuple(expected[k])}"
                 for k in set(state) & set(expected) if tuple(state[k].shape) != tuple(expected[k]))
  if not (missing or unexpected or wrong):
    return
  lines = [f"{source} does not match the expected architecture:"]
  for title, items in (("missing keys", missing), ("unexpected keys", unexpected),
                       ("shape mismatches", wrong)):
    if items:
      lines.append(f"  {title} ({len(items)}): " + ", ".join(items[:12])
                   + (" ..." if len(items) > 12 else ""))
  if any(".running_mean" in k for k in state):
    lines.append("  (BatchNorm statistics found: is this vgg16_bn? Use plain vgg16 weights.)")
  raise WeightFileError("\n".join(lines))


def vgg16_params_from_state_dict(state, widths=VGG16_WIDTHS, source="state_dict"):
  """torchvision VGG16 state_dict (numpy) -> encoder params; ``classifier.*`` is ignored."""
  state = strip_prefix(dict(state))
  check_state_dict(state, expected_vgg16_shapes(widths), source, ignore_prefixes=("classifier.",))
  return {
      f"features_{i}": {
          "kernel": np.ascontiguousarray(state[f"features.{i}.weight"].transpose(2, 3, 1, 0),
                                         np.float32),  # OIHW -> HWIO
          "bias": np.asarray(state[f"features.{i}.bias"], np.float32),
      } for i in conv_indices()
  }


def load_torchvision_vgg16(path, widths=VGG16_WIDTHS):
  """Encoder params from a torchvision VGG16 state_dict file (.pth) or a ported .npz.

  Accepts the full ``vgg16-397923af.pth`` (``classifier.*`` ignored) or a features-only
  dict. Any missing, unexpected or mis-shaped key raises ``WeightFileError`` naming it.
  """
  return vgg16_params_from_state_dict(read_state_dict(path), widths, source=os.fspath(path))


def _image_shape(image_size):
  h, w = (image_size, image_size) if np.isscalar(image_size) else tuple(image_size)
  return (1, int(h), int(w), 3)


def replace_params(params, name, new, source):
  """params with subtree ``name`` replaced by ``new``, checking the two trees match."""
  old_shapes = jax.tree.map(np.shape, params[name])
  new_shapes = jax.tree.map(np.shape, new)
  if old_shapes != new_shapes:
    raise WeightFileError(f"{source}: parameter shapes {new_shapes} do not match the model's "
                          f"{name} {old_shapes}")
  return {**params, name: jax.tree.map(jnp.asarray, new)}


def init_variables(model, rng, image_size, vgg16_weights=None):
  """Initialises ``model`` for images of ``image_size`` (int or (H, W)).

  With ``vgg16_weights`` (a path to a torchvision VGG16 state_dict or a ported .npz)
  the encoder is loaded from it; everything else is randomly initialised.
  Returns ``{"params": ..., "batch_stats": ...}``.
  """
  x = jnp.zeros(_image_shape(image_size), jnp.float32)
  variables = jax.jit(model.init, static_argnames="train")(
      {"params": rng, "dropout": rng}, x, x, train=False)
  variables = dict(variables)
  if vgg16_weights is not None:
    encoder = load_torchvision_vgg16(vgg16_weights, model.encoder_widths)
    variables["params"] = replace_params(dict(variables["params"]), "encoder", encoder,
                                         os.fspath(vgg16_weights))
  return variables
