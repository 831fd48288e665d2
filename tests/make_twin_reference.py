"""Writes tests/twin_reference.npz: the PyTorch twin's outputs for the tiny model (needs torch).

  python tests/make_twin_reference.py

One set of random variables of the tiny FCA model (tests/tiny.py; CA, CSA and none use
subsets of it), rounded to float16 so that they are stored exactly; fixed uint8 images;
and for each attention the twin's pair logits (one pair at 64 px, eval mode) and its
Algorithm 1 probabilities (group mean, three images at 32 px). tests/test_twin_reference.py
checks the JAX model against them without torch.
"""

import pathlib
import sys

import jax
import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]
# pylint: disable=g-import-not-at-top,wrong-import-position
import torch

from coseg_jax import CoSegNet, preprocess, weights
from coseg_jax.interop import torch_twin as tt
from test_torch_parity import random_variables
from tiny import DECODER_WIDTHS, ENCODER_WIDTHS, SMALL
# pylint: enable=g-import-not-at-top,wrong-import-position

OUT = HERE / "twin_reference.npz"
ATTENTIONS = ("ca", "fca", "csa", "none")
PAIR_SIZE, GROUP_SIZE = 64, 32


def variables_of(attention, variables):
  """The subset of the FCA ``variables`` that the ``attention`` model has."""
  learner = variables["params"]["learner"]
  kept = {"ca": {"fc": learner["fc"]}, "csa": {"fc": learner["fc"]}, "fca": learner, "none": None}
  params = {k: v for k, v in variables["params"].items() if k != "learner"}
  if kept[attention] is not None:
    params["learner"] = kept[attention]
  return {**variables, "params": params}


def twin_outputs(attention, variables, pair, group):
  twin = tt.CoSegNetTorch(attention, ENCODER_WIDTHS, DECODER_WIDTHS, dropout_rate=0.0)
  twin.load_variables(variables_of(attention, variables)).eval()
  a, b = preprocess(pair[:1]), preprocess(pair[1:])
  with torch.no_grad():
    logits_a, logits_b = twin(tt.to_nchw(a), tt.to_nchw(b))
  probs = tt.segment_group(twin, tt.to_nchw(preprocess(group)), "mean")
  return {"logits_a": tt.to_nhwc(logits_a.detach()), "logits_b": tt.to_nhwc(logits_b.detach()),
          "group_probs": probs.numpy()}


def main():
  model = CoSegNet("fca", dropout_rate=0.0, **SMALL)
  variables = jax.tree.map(lambda x: x.astype(np.float16).astype(np.float32),
                           random_variables(model, seed=11))
  rng = np.random.default_rng(12)
  pair = rng.integers(0, 256, (2, PAIR_SIZE, PAIR_SIZE, 3), dtype=np.uint8)
  group = rng.integers(0, 256, (3, GROUP_SIZE, GROUP_SIZE, 3), dtype=np.uint8)
  arrays = {"pair": pair, "group": group}
  for (collection, path), value in weights.flatten_variables(variables).items():
    arrays["/".join(("variables", collection) + path)] = value.astype(np.float16)
  for attention in ATTENTIONS:
    for name, value in twin_outputs(attention, variables, pair, group).items():
      arrays[f"{attention}/{name}"] = np.asarray(value, np.float32)
  np.savez_compressed(OUT, **arrays)
  print(f"wrote {OUT} ({OUT.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
  main()
