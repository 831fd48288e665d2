"""The training loss (§3.5): 2-class cross-entropy on both images of a pair."""

import jax.numpy as jnp
import optax

from coseg_jax.constants import IGNORE


def cross_entropy(logits, labels, foreground_weight=1.0):
  """Mean pixel cross-entropy of [B, H, W, K] logits against [B, H, W] labels.

  Pixels labelled ``IGNORE`` are left out of the mean; an all-void batch gives 0.
  ``foreground_weight`` multiplies the loss of the pixels labelled 1 (1 = the paper's
  plain cross-entropy; a training choice of the CPU recipe, ``config.train``).
  """
  labels = labels.astype(jnp.int32)
  valid = labels != IGNORE
  losses = optax.softmax_cross_entropy_with_integer_labels(
      logits.astype(jnp.float32), jnp.where(valid, labels, 0))
  weights = jnp.where(labels == 1, foreground_weight, 1.0) * valid
  return jnp.sum(losses * weights) / jnp.maximum(jnp.sum(valid), 1)


def pair_loss(logits_a, logits_b, mask_a, mask_b, foreground_weight=1.0):
  """Loss of a pair batch: cross-entropy of image A plus that of image B."""
  return (cross_entropy(logits_a, mask_a, foreground_weight)
          + cross_entropy(logits_b, mask_b, foreground_weight))
