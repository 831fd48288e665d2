"""Ports torch weights to a torch-free ``.npz``.

  python -m coseg_jax.apps.port_weights vgg16-397923af.pth vgg16_features.npz
  python -m coseg_jax.apps.port_weights --format=reference epoch1iter5000.pkl reference_ca.npz

``torchvision`` (default): the 13 encoder convolutions of a VGG16 state_dict under
torchvision's keys (OIHW float32); loads with ``coseg_jax.load_torchvision_vgg16`` /
``init_variables(vgg16_weights=...)``. ``reference``: every variable of a checkpoint of
the authors' released code under its keys (``pretrained_model.*`` dropped); loads with
``coseg_jax.weights.load_reference_checkpoint`` / ``init_variables(reference_checkpoint=...)``
into ``CoSegNet(attention="ca_mlp", decoder_type="reference")`` (docs/reference.md).
"""

import os

from absl import flags
import numpy as np

from coseg_jax import files, weights
from coseg_jax.apps import cli
from coseg_jax.models.vgg import conv_indices


def port_torchvision(src, dst):
  """Validates ``src`` as VGG16 and writes its encoder tensors to ``dst`` (.npz)."""
  state = weights.strip_prefix(weights.read_state_dict(src))
  weights.check_state_dict(state, weights.expected_vgg16_shapes(), os.fspath(src),
                           ignore_prefixes=("classifier.",))
  keys = [f"features.{i}.{kind}" for i in conv_indices() for kind in ("weight", "bias")]
  np.savez(dst, **{key: np.asarray(state[key], np.float32) for key in keys})
  return keys


def port_reference(src, dst):
  """Validates ``src`` as a released reference checkpoint and writes its variables to ``dst``."""
  variables = weights.load_reference_checkpoint(src)
  state = weights.variables_to_torch(variables, weights.reference_module_name)
  np.savez(dst, **state)
  return list(state)


PORTS = {"torchvision": port_torchvision, "reference": port_reference}


def define(fv):
  """The command's flags."""
  flags.DEFINE_enum("format", "torchvision", sorted(PORTS), "torchvision VGG16 (the encoder) or a "
                    "reference checkpoint (all variables).", flag_values=fv)


def port_files(fv, args):
  if len(args) != 2:
    raise flags.Error("usage: python -m coseg_jax.apps.port_weights [--format=...] SRC DST "
                      "(a torch .pth/.pkl file, an output .npz)")
  src, dst = args
  if not dst.endswith(".npz"):
    raise flags.Error(f"output must end in .npz, got {dst}")
  port(fv.format, src, dst)


def port(kind, src, dst):
  """Ports ``src`` to ``dst``, checking both paths before reading the weights."""
  if not os.path.isfile(src):
    raise FileNotFoundError(f"{src}: no such file")
  files.check_writable_file(dst, "the weights")
  keys = PORTS[kind](src, dst)
  print(f"wrote {len(keys)} tensors to {dst}")


def main(argv=None):
  cli.main(define, port_files, argv, __doc__)


if __name__ == "__main__":
  main()
