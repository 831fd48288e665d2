"""Ports a torchvision VGG16 state_dict to a torch-free ``.npz``.

  python -m coseg_jax.port_weights vgg16-397923af.pth vgg16_features.npz

The output holds the 13 encoder convolutions under torchvision's keys (OIHW float32)
and loads with ``coseg_jax.load_torchvision_vgg16`` / ``init_variables`` without torch.
"""

import argparse
import os

import numpy as np

from coseg_jax import weights
from coseg_jax.models.vgg import conv_indices


def port_torchvision(src, dst):
  """Validates ``src`` as VGG16 and writes its encoder tensors to ``dst`` (.npz)."""
  state = weights.strip_prefix(weights.read_state_dict(src))
  weights.check_state_dict(state, weights.expected_vgg16_shapes(), os.fspath(src),
                           ignore_prefixes=("classifier.",))
  keys = [f"features.{i}.{kind}" for i in conv_indices() for kind in ("weight", "bias")]
  np.savez(dst, **{key: np.asarray(state[key], np.float32) for key in keys})
  return keys


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("src", help="torch state_dict file (.pth / .pkl)")
  parser.add_argument("dst", help="output .npz")
  args = parser.parse_args(argv)
  if not args.dst.endswith(".npz"):
    parser.error(f"output must end in .npz, got {args.dst}")
  keys = port_torchvision(args.src, args.dst)
  print(f"wrote {len(keys)} tensors to {args.dst}")


if __name__ == "__main__":
  main()
