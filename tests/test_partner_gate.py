"""The partner gate: its equations against numpy, what it keeps, and how the group, pair and
distractor paths apply it."""

import jax
import numpy as np
import pytest

from coseg_jax import CoSegNet, group, init_variables
from coseg_jax.evaluators import distractor as distractors, modes
from coseg_jax.proj.real_photos import partner_gate
from coseg_jax.proj.real_photos.partner_gate import GATE

from test_distractor import toy_groups
from test_group import sharpened, uint8_images
from tiny import SIZE, SMALL


def by_hand(features, probs):
  """docs of ``coseg_jax.proj.real_photos.partner_gate`` in numpy, one image at a time."""
  n, h, w, _ = features.shape
  cell = probs.shape[1] // h
  unit = lambda x: x / (np.linalg.norm(x, axis=-1, keepdims=True) + 1e-6)
  q = []
  for f, p in zip(features, probs):
    weight = p.reshape(h, cell, w, cell).mean((1, 3))
    q.append(unit((weight[..., None] * unit(f)).sum((0, 1)) / (weight.sum() + 1e-6)))
  gated = []
  for i, (f, p) in enumerate(zip(features, probs)):
    context = np.mean([q[k] for k in range(n) if k != i] or [q[i]], axis=0)
    cosine = unit(f) @ context
    scaled = (cosine - cosine.min()) / (cosine.max() - cosine.min() + 1e-6)
    gated.append(p * np.asarray(jax.image.resize(scaled, p.shape, "bilinear")))
  return np.stack(gated)


@pytest.mark.parametrize("n", [1, 2, 4])
def test_gate_group_is_its_equations(n):
  rng = np.random.RandomState(n)
  features = rng.rand(n, 2, 2, 16).astype(np.float32)
  probs = rng.rand(n, 64, 64).astype(np.float32)
  np.testing.assert_allclose(partner_gate.gate_group(features, probs), by_hand(features, probs),
                             atol=1e-5)


def two_objects(top, bottom):
  """Features [1, 2, 2, 3]: the top row one direction, the bottom row another."""
  f = np.zeros((1, 2, 2, 3), np.float32)
  f[0, 0, :, top] = f[0, 1, :, bottom] = 1
  return f


def test_gate_keeps_what_the_partner_shows_as_foreground():
  """Image 0 holds objects 0 (top) and 1 (bottom); its map says both are foreground. The
  partner shows object 0, or object 1, at its top over background 2: the gate keeps
  only the object the partner shows."""
  foreground_on_top = np.zeros((1, 64, 64), np.float32)
  foreground_on_top[0, :32] = 1
  for shown, kept in ((0, slice(0, 32)), (1, slice(32, 64))):
    features = np.concatenate([two_objects(0, 1), two_objects(shown, 2)])
    probs = np.concatenate([np.ones((1, 64, 64), np.float32), foreground_on_top])
    gated = partner_gate.gate_group(features, probs)[0]
    dropped = slice(32, 64) if kept.start == 0 else slice(0, 32)
    assert gated[kept].mean() > 0.7 and gated[dropped].mean() < 0.3, (shown, gated.mean(1))


@pytest.fixture(scope="module")
def fca():
  model = CoSegNet("fca", **SMALL)
  return model, sharpened(init_variables(model, jax.random.key(3), SIZE))


def test_segment_group_gates_its_own_maps(fca):
  model, variables = fca
  images = uint8_images(3, seed=4)
  plain = group.segment_group(model, variables, images, chunk_size=2)
  gated = group.segment_group(model, variables, images, chunk_size=2, gate=GATE)
  features, _ = group.group_attention(model, variables, images, chunk_size=2)
  features = np.concatenate([np.asarray(f) for f in features])[:3]
  np.testing.assert_allclose(gated, by_hand(features, plain), atol=2e-5)
  assert np.abs(gated - plain).max() > 1e-3


def test_pairs_are_gated_by_the_partner_of_each_pair(fca):
  """decode_pairs (the distractor test, pairwise) gates image a of pair (a, b) with b's
  foreground in that pair: the group gate of the pair."""
  model, variables = fca
  c = distractors.render(toy_groups(), SIZE)
  pairs = np.concatenate([c.pairs(t) for t in distractors.TARGETS])[::4]
  gated = distractors.segmenter(modes.MODES["distractor_gate"], model, variables, 2,
                                  gate=GATE)(c.images, pairs)
  for k, (a, b) in enumerate(pairs):
    pair = group.segment_group(model, variables, c.images[[a, b]], leave_one_out=True,
                               gate=GATE)
    np.testing.assert_allclose(gated[k], pair[0], atol=2e-5)
  pairwise = group.segment_pairwise(model, variables, c.images[:3], chunk_size=2, gate=GATE)
  for i in range(3):
    expected = np.mean([group.segment_group(model, variables, c.images[[i, j]], leave_one_out=True,
                                            gate=GATE)[0]
                        for j in range(3) if j != i], axis=0)
    np.testing.assert_allclose(pairwise[i], expected, atol=2e-5)
