"""Semantic attention learners (paper §3.1–3.3) and group reductions (§3.4).

Every learner splits into three steps so that the pair model and Algorithm 1 share them:

* ``__call__(f)``: the image's own channel attention alpha = sigmoid(W^T GAP(f) + b)
  (eq. 1–2, 8–9), shape [B, C];
* ``combine(own, context)``: the channel attention actually applied to an image, given
  its own alpha and the context alpha from the other image(s);
* ``attend(f, alpha)``: the attended feature map f' fed to the decoder.
"""

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from coseg_jax.errors import BadValue


def global_average_pool(f):
  """AvgPool over the spatial axes of an NHWC map -> [B, C]."""
  return jnp.mean(f, axis=(1, 2))


def spatial_attention(f):
  """alpha^s = sigmoid(mean over channels of f), eq. (10)–(11): NHWC f -> [B, H, W, 1]."""
  return nn.sigmoid(jnp.mean(f, axis=-1, keepdims=True))


def scale_channels(f, alpha):
  """alpha (.) f with alpha [B, C] broadcast over H, W."""
  return f * alpha[:, None, None, :].astype(f.dtype)


class ChannelAttention(nn.Module):
  """CA, eq. (1)–(4): f'_A = alpha_B (.) f_A and f'_B = alpha_A (.) f_B.

  The FC layer W (C -> C) is shared by both images.
  """
  features: int = 512
  dtype: jnp.dtype = jnp.float32

  def setup(self):
    self.fc = nn.Dense(self.features, dtype=self.dtype)

  def __call__(self, f):
    """alpha = sigmoid(W^T * AvgPool(f) + b), eq. (1)–(2)."""
    return nn.sigmoid(self.fc(global_average_pool(f)))

  def combine(self, own, context):
    """Eq. (3)–(4): an image is attended by the *other* image's alpha."""
    del own
    return context

  def attend(self, f, alpha):
    return scale_channels(f, alpha)


class FusedChannelAttention(ChannelAttention):
  """FCA, eq. (5)–(7): alpha_C = sigmoid(W_f^T * (alpha_A + alpha_B) + b_f) for both images."""

  def setup(self):
    super().setup()
    self.fuse = nn.Dense(self.features, dtype=self.dtype)

  def combine(self, own, context):
    """Eq. (5): fuse the two attentions; the result is the same for both images."""
    return nn.sigmoid(self.fuse(own + context))


class ChannelSpatialAttention(ChannelAttention):
  """CSA, eq. (8)–(13): f'_A = alpha^c_B (.) alpha^s_A (.) f_A.

  The channel attention alpha^c is CA's (eq. 8–9); the spatial map
  alpha^s = sigmoid(mean over channels of f) (eq. 10–11) is always the image's own.
  """

  def attend(self, f, alpha):
    """Eq. (12)–(13); alpha^s is sown as ("intermediates", "spatial_attention")."""
    spatial = spatial_attention(f)
    self.sow("intermediates", "spatial_attention", spatial)
    return scale_channels(f, alpha) * spatial


class MLPChannelAttention(ChannelAttention):
  """The CA of the authors' released code ("ca_mlp"): a two-layer MLP instead of eq. (1)'s FC.

  alpha = sigmoid(W_2 tanh(W_1 AvgPool(f) + b_1) + b_2), W_1: C -> ``hidden``; used like
  CA, eq. (3)–(4): an image is attended by the other image's alpha.
  """
  hidden: int = 4096

  def setup(self):
    self.mlp1 = nn.Dense(self.hidden, dtype=self.dtype)
    self.mlp2 = nn.Dense(self.features, dtype=self.dtype)

  def __call__(self, f):
    return nn.sigmoid(self.mlp2(jnp.tanh(self.mlp1(global_average_pool(f)))))


class NoAttention(nn.Module):
  """Identity learner: encoder + decoder only (Pixel Objectness, the paper's §4.2 baseline)."""
  features: int = 512
  dtype: jnp.dtype = jnp.float32

  def __call__(self, f):
    return jnp.ones(f.shape[:1] + f.shape[-1:], jnp.float32)

  def combine(self, own, context):
    del own
    return context

  def attend(self, f, alpha):
    del alpha
    return f


ATTENTIONS = {
    "ca": ChannelAttention,
    "fca": FusedChannelAttention,
    "csa": ChannelSpatialAttention,
    "ca_mlp": MLPChannelAttention,
    "none": NoAttention,
}

REDUCTIONS = ("mean", "min")


def reduce_group(alphas, reduce="mean", leave_one_out=False):
  """Context attention of every image of a group (Algorithm 1, line 5), on the host.

  Args:
    alphas: [N, C] attention of every image of the group.
    reduce: "mean" (Group Average Attention, Algorithm 1), "min" (Group Minimum
      Attention, §4.4: only channels active in every image survive), or a function of
      your own mapping the [M, C] attentions of M images to one [C] context attention
      (numpy or jax.numpy; docs/extending.md has an example).
    leave_one_out: if True, image i gets the reduction over the *other* images only,
      so a group of two equals the pair forward. A group of one has no other image
      and falls back to its own attention.

  Returns:
    float32 numpy [N, C]; all rows are equal unless ``leave_one_out``.
  """
  if not callable(reduce) and reduce not in REDUCTIONS:
    raise BadValue(f"reduce must be one of {REDUCTIONS} or a function, got {reduce!r}")
  alphas = np.asarray(alphas, np.float64)
  n = alphas.shape[0]
  if n == 0:
    raise BadValue("cannot reduce the attention of an empty group")
  if callable(reduce):
    context = _reduce_with(reduce, alphas, leave_one_out)
  elif reduce == "mean":
    total = alphas.sum(axis=0, keepdims=True)
    context = (total - alphas) / (n - 1) if leave_one_out and n > 1 else total / n
  elif not leave_one_out or n == 1:
    context = alphas.min(axis=0, keepdims=True)
  else:
    smallest, second = np.partition(alphas, 1, axis=0)[:2]
    is_argmin = np.arange(n)[:, None] == alphas.argmin(axis=0)[None, :]
    context = np.where(is_argmin, second, smallest)
  return np.broadcast_to(context, alphas.shape).astype(np.float32)


def _reduce_with(reduce, alphas, leave_one_out):
  """``reduce`` [M, C] -> [C] applied to the group (or, leaving one out, to the others)."""
  n, channels = alphas.shape
  if leave_one_out and n > 1:
    groups = [np.delete(alphas, i, axis=0) for i in range(n)]
  else:
    groups = [alphas]
  context = np.stack([np.asarray(reduce(group), np.float64) for group in groups])
  if context.shape != (len(groups), channels):
    raise BadValue(f"reduce {getattr(reduce, '__name__', reduce)!r} must map [M, {channels}] "
                   f"attentions to [{channels}], got shape {context.shape[1:]}")
  return context
