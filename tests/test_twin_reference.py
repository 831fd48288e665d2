"""Numerical parity with the PyTorch twin without torch: tests/twin_reference.npz holds the
twin's outputs for the tiny model (written by tests/make_twin_reference.py)."""

import jax
import numpy as np
import pytest
from flax import traverse_util

from coseg_jax import CoSegNet, preprocess, segment_group
from tiny import REPO, SMALL, attentions

REFERENCE = REPO / "tests" / "twin_reference.npz"
TOL = 1e-4  # max |jax - torch| / max |torch|, as in test_torch_parity.py


@pytest.fixture(scope="module")
def reference():
  with np.load(REFERENCE) as data:
    arrays = {key: data[key] for key in data.files}
  flat = {tuple(key.split("/")[1:]): value.astype(np.float32)
          for key, value in arrays.items() if key.startswith("variables/")}
  return arrays, traverse_util.unflatten_dict(flat)


def rel_err(x, ref):
  return np.abs(np.asarray(x, np.float64) - ref).max() / np.abs(ref).max()


def subset(variables, model):
  """The part of the stored (FCA) variables that ``model`` has."""
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), np.zeros((1, 64, 64, 3)),
                                             np.zeros((1, 64, 64, 3))))
  return jax.tree_util.tree_map_with_path(lambda path, _: _lookup(variables, path), shapes)


def _lookup(tree, path):
  for key in path:
    tree = tree[key.key]
  return tree


@pytest.mark.parametrize("attention", attentions())
def test_outputs_match_the_stored_twin_outputs(reference, attention):
  arrays, variables = reference
  model = CoSegNet(attention, dropout_rate=0.0, **SMALL)
  variables = subset(variables, model)
  pair = preprocess(arrays["pair"])
  logits_a, logits_b = jax.jit(model.apply)(variables, pair[:1], pair[1:])
  for got, name in ((logits_a, "logits_a"), (logits_b, "logits_b")):
    expected = arrays[f"{attention}/{name}"]
    assert np.abs(expected).max() > 0.1  # not a degenerate output
    assert rel_err(got, expected) < TOL, name
  probs = segment_group(model, variables, arrays["group"], reduce="mean", chunk_size=2)
  assert rel_err(probs, arrays[f"{attention}/group_probs"]) < TOL
