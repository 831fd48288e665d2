"""torch state_dicts -> flax variables: torchvision VGG16 encoders and full checkpoints.

A torch ``state_dict`` is read with torch (``pip install coseg_jax[torch]``); the
``.npz`` written by ``python -m coseg_jax.apps.port_weights`` holds the same tensors and is
read with numpy alone, so training never needs torch.

Full models map flax variables to torch keys module by module (``variables_to_torch``,
``variables_from_torch``): a module path names a torch module, and its leaves
``kernel``/``scale``/``bias`` and ``mean``/``var`` are torch's ``weight``/``bias`` and
``running_mean``/``running_var``; conv kernels are HWIO here and OIHW in torch, dense
kernels (in, out) here and (out, in) in torch. ``reference_module_name`` is the layout
of the authors' released checkpoints (docs/reference.md).
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from coseg_jax.errors import BadValue, MissingExtra
from coseg_jax.models.coseg import CoSegNet
from coseg_jax.models.vgg import VGG16_WIDTHS, conv_channels, conv_indices

# Keys of a released reference checkpoint that the model does not use: the whole
# torchvision VGG16 (its features are saved again as ``features_map``, its classifier
# is unused).
REFERENCE_UNUSED = ("pretrained_model.",)


class WeightFileError(BadValue):
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
    raise MissingExtra(f"reading {path} needs torch (pip install 'coseg_jax[torch]'); or "
                       "convert it once with `python -m coseg_jax.apps.port_weights IN.pth "
                       "OUT.npz` on a machine with torch and load the .npz") from e
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
  if any(".running_mean" in k for k in state) and not any(".running_mean" in k for k in expected):
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


_LEAF_NAMES = {
    ("params", "kernel"): "weight",
    ("params", "scale"): "weight",
    ("params", "bias"): "bias",
    ("batch_stats", "mean"): "running_mean",
    ("batch_stats", "var"): "running_var",
}
_TO_TORCH = {4: (3, 2, 0, 1), 2: (1, 0)}  # HWIO -> OIHW, (in, out) -> (out, in)
_FROM_TORCH = {4: (2, 3, 1, 0), 2: (1, 0)}


def _axes(table, ndim):
  return table.get(ndim, tuple(range(ndim)))


def torch_shape(shape):
  """Shape of a flax variable in torch's layout."""
  return tuple(shape[axis] for axis in _axes(_TO_TORCH, len(shape)))


def to_torch_layout(x):
  """HWIO conv kernel -> OIHW, (in, out) dense kernel -> (out, in); vectors unchanged."""
  return x.transpose(_axes(_TO_TORCH, x.ndim))


def from_torch_layout(x):
  """Inverse of ``to_torch_layout``."""
  return x.transpose(_axes(_FROM_TORCH, x.ndim))


def flatten_variables(variables):
  """{"params": tree, ...} -> {(collection, path): leaf}."""
  return {(collection, path): value for collection, tree in variables.items()
          for path, value in traverse_util.flatten_dict(dict(tree)).items()}


def torch_key(module_name, collection, path):
  """Flax variable (collection, module path + leaf) -> torch state_dict key."""
  return f"{module_name(path[:-1])}.{_LEAF_NAMES[collection, path[-1]]}"


def variable_shapes(model, image_size=64):
  """Shapes of ``model``'s variables, without computing them."""
  x = jax.ShapeDtypeStruct((1, image_size, image_size, 3), jnp.float32)
  rng = jax.random.key(0)
  return jax.eval_shape(lambda a, b: model.init({"params": rng, "dropout": rng}, a, b), x, x)


def variables_to_torch(variables, module_name):
  """Flax variables -> {torch key: numpy array in torch's layout}."""
  return {torch_key(module_name, collection, path): np.array(to_torch_layout(np.asarray(value)))
          for (collection, path), value in flatten_variables(variables).items()}


def variables_from_torch(state, model, module_name, source="state_dict", ignore_prefixes=()):
  """{torch key: numpy array} -> float32 numpy variables of ``model`` ({"params", "batch_stats"}).

  Keys may carry ``nn.DataParallel``'s ``module.`` prefix; ``num_batches_tracked`` and
  keys under ``ignore_prefixes`` are skipped. Every missing, unexpected or mis-shaped
  key raises one ``WeightFileError`` naming them all, before anything is converted.
  """
  state = {key: value for key, value in strip_prefix(dict(state)).items()
           if not key.endswith(".num_batches_tracked")}
  names = {torch_key(module_name, *name): (name, shape.shape)
           for name, shape in flatten_variables(variable_shapes(model)).items()}
  check_state_dict(state, {key: torch_shape(shape) for key, (_, shape) in names.items()}, source,
                   ignore_prefixes)
  variables = {}
  for key, ((collection, path), _) in names.items():
    value = np.ascontiguousarray(from_torch_layout(np.asarray(state[key])), np.float32)
    variables.setdefault(collection, {})[path] = value
  return {collection: traverse_util.unflatten_dict(tree) for collection, tree in variables.items()}


def _index(name):
  return name.rsplit("_", 1)[1]


def reference_module_name(module):
  """Flax module path of the reference model -> module name in the released checkpoints.

  encoder/features_i -> features_map.i; learner/mlp1 -> mlp1;
  decoder/res_j/block_k/{conv,norm} -> dec.model.0.model.j.model.k.{conv,norm};
  decoder/block_i/{conv,norm} -> dec.model.i.{conv,norm}.
  """
  part, rest = module[0], module[1:]
  if part == "encoder":
    return f"features_map.{_index(rest[0])}"
  if part == "learner" and rest[0] in ("mlp1", "mlp2"):
    return rest[0]
  if part == "decoder" and rest[0].startswith("res_"):
    return f"dec.model.0.model.{_index(rest[0])}.model.{_index(rest[1])}.{rest[2]}"
  if part == "decoder" and rest[0].startswith("block_"):
    return f"dec.model.{_index(rest[0])}.{rest[1]}"
  raise BadValue(f"{'/'.join(module)} has no place in the reference checkpoint layout: use "
                 "CoSegNet(attention='ca_mlp', decoder_type='reference')")


def reference_model(**kwargs):
  """The architecture of the authors' released code: ``CoSegNet`` with CA-MLP and their decoder."""
  return CoSegNet(attention="ca_mlp", decoder_type="reference", **kwargs)


def load_reference_checkpoint(path, model=None):
  """Full variables of ``model`` (default ``reference_model()``) from a released checkpoint.

  ``path`` is the ``torch.save``d state_dict (.pkl/.pth, needs torch) or its ``.npz``
  port (``python -m coseg_jax.apps.port_weights --format=reference``). ``pretrained_model.*``
  is ignored (see ``REFERENCE_UNUSED``); any other mismatch raises ``WeightFileError``.
  """
  return variables_from_torch(read_state_dict(path), model or reference_model(),
                              reference_module_name, os.fspath(path), REFERENCE_UNUSED)


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


def init_variables(model, rng, image_size, vgg16_weights=None, reference_checkpoint=None):
  """Initialises ``model`` for images of ``image_size`` (int or (H, W)).

  With ``vgg16_weights`` (a path to a torchvision VGG16 state_dict or a ported .npz)
  the encoder is loaded from it; everything else is randomly initialised. With
  ``reference_checkpoint`` (a released .pkl/.pth or its ported .npz) every variable
  is loaded (``load_reference_checkpoint``) and nothing is random.
  Returns ``{"params": ..., "batch_stats": ...}``.
  """
  if reference_checkpoint is not None:
    if vgg16_weights is not None:
      raise BadValue("give vgg16_weights or reference_checkpoint, not both")
    return jax.tree.map(jnp.asarray, load_reference_checkpoint(reference_checkpoint, model))
  x = jnp.zeros(_image_shape(image_size), jnp.float32)
  variables = jax.jit(model.init, static_argnames="train")(
      {"params": rng, "dropout": rng}, x, x, train=False)
  variables = dict(variables)
  if vgg16_weights is not None:
    encoder = load_torchvision_vgg16(vgg16_weights, model.encoder_widths)
    variables["params"] = replace_params(dict(variables["params"]), "encoder", encoder,
                                         os.fspath(vgg16_weights))
  return variables
