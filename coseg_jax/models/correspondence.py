"""A spatial correspondence cue: where in this image is what the partner shows (a recipe
option, ``model.cue="correlation"``; not in the paper).

The channel attention (one vector per image) tells the decoder *what kind* of thing the
partner holds, not *where* it is in this image. Li, Jafari and Rother, "Deep Object
Co-Segmentation" (ACCV 2018), give their decoder a mutual correlation layer: every
location of image A against every location of image B. Here A's locations are compared
with K foreground-weighted prototypes of the partner instead, which costs O(hwK) per
image rather than O((hw)^2) and, being a mean, reduces over a group in O(N).

With g(x) = unit(f(x)), the pool5 features of a location scaled to unit length:

* slot logits s_k(x) = beta_k z(x) + v_k . g(x), k = 1..K, where z is the image's channel
  mean of f standardised over its locations (how salient a location is: the map eq. 10
  squashes into CSA's spatial attention) and beta_k (init 1), v_k (init small) are learned;
* per-image prototypes p_k = unit(sum_x softmax_x(s_k)(x) g(x)), [K, C];
* the partner's prototypes q_k: for a pair, the other image's p_k; for a group, the mean
  of the *other* images' p_k, (sum_j p_jk - p_ik) / (N - 1), computed from one sum over
  the group as Algorithm 1 reduces the attention vectors (``reduce_prototypes``); a group
  of one uses its own;
* the cue c_k(x) = cos(g(x), q_k), [h, w, K], concatenated to the attended pool5 features
  at the decoder's input (``CoSegNet.decode``), so the decoder learns how to use it.

``cue_map`` (the soft maximum over the K slots) pictures the cue as one map.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from coseg_jax.models.attention import reduce_group

CUES = ("", "correlation")  # model.cue: "" (the paper) | "correlation"
EPS = 1e-6
SOFT_MAX_TEMPERATURE = 10.0  # cue_map: 1/t log mean_k exp(t c_k), near max_k c_k


def unit(x):
  """x scaled to unit length along its last axis."""
  return x / (jnp.linalg.norm(x, axis=-1, keepdims=True) + EPS)


def standardise(m):
  """[B, h, w] -> zero mean, unit standard deviation over each image's locations."""
  mean = m.mean((1, 2), keepdims=True)
  return (m - mean) / (m.std((1, 2), keepdims=True) + EPS)


def cue_map(cue):
  """The cue [B, h, w, K] as one map [B, h, w]: its soft maximum over the K slots."""
  t = SOFT_MAX_TEMPERATURE
  return (jax.nn.logsumexp(t * cue, axis=-1) - jnp.log(cue.shape[-1])) / t


def reduce_prototypes(prototypes):
  """The partner prototypes of every image of a group, on the host: the mean of the other
  images' prototypes (total minus own, over N - 1), its own for a group of one.

  prototypes: [N, K, C] -> float32 numpy [N, K, C]. A group of two swaps the two, so
  ``segment_group`` on two images gives the pair forward's cue.
  """
  prototypes = np.asarray(prototypes, np.float32)
  flat = prototypes.reshape(len(prototypes), -1)
  return reduce_group(flat, "mean", leave_one_out=True).reshape(prototypes.shape)


class CorrelationCue(nn.Module):
  """The cue of the module docstring: ``prototypes(f)`` -> [B, K, C] and
  ``__call__(f, partner)`` -> c [B, h, w, K], f the pool5 map [B, h, w, C] and partner
  the partner prototypes [B, K, C]. Its parameters: ``slots`` (v_k, a 1x1 projection
  written as a Dense layer, no convolution) and ``saliency`` (beta_k)."""
  prototypes_per_image: int = 4
  dtype: jnp.dtype = jnp.float32

  def setup(self):
    k = self.prototypes_per_image
    self.slots = nn.Dense(k, use_bias=False, dtype=jnp.float32,
                          kernel_init=nn.initializers.normal(0.5))
    self.saliency = self.param("saliency", nn.initializers.ones, (k,))

  def prototypes(self, f):
    """p_k = unit(sum_x softmax_x(s_k)(x) g(x)): [B, h, w, C] -> [B, K, C] float32."""
    g = unit(f.astype(jnp.float32))
    z = standardise(f.astype(jnp.float32).mean(-1))
    logits = z[..., None] * self.saliency + self.slots(g)  # [B, h, w, K]
    b, h, w, k = logits.shape
    weights = jax.nn.softmax(logits.reshape(b, h * w, k), axis=1)
    return unit(jnp.einsum("bxk,bxc->bkc", weights, g.reshape(b, h * w, -1)))

  def __call__(self, f, partner):
    """c_k(x) = cos(g(x), q_k): [B, h, w, C], [B, K, C] -> [B, h, w, K] in ``dtype``."""
    g = unit(f.astype(jnp.float32))
    return jnp.einsum("bhwc,bkc->bhwk", g, unit(partner.astype(jnp.float32))).astype(self.dtype)
