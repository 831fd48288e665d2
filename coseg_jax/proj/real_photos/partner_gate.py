"""The partner gate: an optional step after the model, with no weights, that keeps in
each image what looks like the object found in the other image(s). Not in the paper
(docs/results.md, "The partner gate", measures it).

Given an image's pool5 features f [h, w, C] and its foreground probability P [S, S]
from the model (pair forward or Algorithm 1):

* its foreground prototype q = unit(sum_x P(x) unit(f(x)) / sum_x P(x)), with P averaged
  over each location's S/h x S/w pixels;
* the context prototype of image i is the mean of the *other* images' q (its own q in a
  group of one);
* the gate g_i(x) = cos(f_i(x), context_i), scaled to [0, 1] over the image's locations
  and resized bilinearly to S x S; the gated map is P_i * g_i.

Trained with the gate on, the model learns to open it (research_log.md, "A gate from the
partner's similarity"), so it is applied to a trained model at inference only: pass
``GATE`` as the ``gate`` of ``coseg_jax.segment_group`` / ``segment_pairwise``.
"""

import jax
import jax.numpy as jnp
import numpy as np

from coseg_jax.models.attention import reduce_group

EPS = 1e-6


def unit(x):
  """x scaled to unit length along its last axis."""
  return x / (jnp.linalg.norm(x, axis=-1, keepdims=True) + EPS)


@jax.jit
def prototypes(features, probs):
  """Foreground prototypes [N, C] of features [N, h, w, C] weighted by probs [N, S, S]."""
  n, h, w, _ = features.shape
  weights = probs.reshape(n, h, probs.shape[1] // h, w, probs.shape[2] // w).mean((2, 4))
  total = jnp.einsum("nhw,nhwc->nc", weights, unit(features))
  return unit(total / (weights.sum((1, 2))[:, None] + EPS))


@jax.jit
def gate(features, context, probs):
  """P(foreground) [N, S, S] gated by the similarity of features [N, h, w, C] to the
  context prototypes [N, C]."""
  cosine = jnp.einsum("nhwc,nc->nhw", unit(features), context)
  low = cosine.min((1, 2), keepdims=True)
  high = cosine.max((1, 2), keepdims=True)
  scaled = (cosine - low) / (high - low + EPS)
  return probs * jax.image.resize(scaled, probs.shape, "bilinear")


def gate_group(features, probs):
  """The gate within a group: every image against the mean of the others' prototypes.

  features: [N, h, w, C]; probs: [N, S, S] the model's maps. Returns float32 [N, S, S].
  """
  features = jnp.asarray(features, jnp.float32)
  probs = jnp.asarray(probs, jnp.float32)
  context = reduce_group(prototypes(features, probs), "mean", leave_one_out=True)
  return np.asarray(gate(features, jnp.asarray(context), probs))


def gate_pair(features, probs, partner_features, partner_probs):
  """The gate of pairs: each image [K] against its partner's prototype -> [K, S, S]."""
  return gate(features, prototypes(partner_features, partner_probs), probs)


class PartnerGate:
  """The ``gate`` that ``coseg_jax.group`` takes: ``group`` and ``pair`` steps."""
  group = staticmethod(gate_group)
  pair = staticmethod(gate_pair)


GATE = PartnerGate()
