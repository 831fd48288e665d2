"""Ports torch weights to a torch-free ``.npz``.

  python -m coseg_jax.port_weights vgg16-397923af.pth vgg16_features.npz
  python -m coseg_jax.port_weights --format reference epoch1iter5000.pkl reference_ca.npz

``torchvision`` (default): the 13 encoder convolutions of a VGG16 state_dict under
torchvision's keys (OIHW float32); loads with ``coseg_jax.load_torchvision_vgg16`` /
``init_variables(vgg16_weights=...)``. ``reference``: every variable of a checkpoint of
the authors' released code under its keys (``pretrained_model.*`` dropped); loads with
``coseg_jax.weights.load_reference_checkpoint`` / ``init_variables(reference_checkpoint=...)``
into ``CoSegNet(attention="ca_mlp", decoder_type="reference")`` (docs/reference.md).
"""

import argparse
import os

import numpy as np

from coseg_jax import cli, weights
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


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--format", choices=sorted(PORTS), default="torchvision",
                      help="torchvision VGG16 (the encoder) or a reference checkpoint (all)")
  parser.add_argument("src", help="torch state_dict file (.pth / .pkl)")
  parser.add_argument("dst", help="output .npz")
  parser.add_argument("--debug", action="store_true", help=cli.DEBUG_HELP)
  args = parser.parse_args(argv)
  if not args.dst.endswith(".npz"):
    parser.error(f"output must end in .npz, got {args.dst}")
  cli.run(lambda: port(args.format, args.src, args.dst), args.debug)


def port(kind, src, dst):
  """Ports ``src`` to ``dst``, checking both paths before reading the weights."""
  if not os.path.isfile(src):
    raise FileNotFoundError(f"{src}: no such file")
  folder = os.path.dirname(os.path.abspath(dst))
  if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
    raise PermissionError(f"cannot write {dst}: {folder} is not a writable folder")
  keys = PORTS[kind](src, dst)
  print(f"wrote {len(keys)} tensors to {dst}")


if __name__ == "__main__":
  main()
