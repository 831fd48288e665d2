"""The training loss (§3.5): 2-class cross-entropy on both images of a pair."""

import jax.numpy as jnp
import optax

from coseg_jax.constants import IGNORE


def cross_entropy(logits, labels):
  """Mean pixel cross-entropy of [B, H, W, K] logits against [B, H, W] labels.

  Pixels labelled ``IGNORE`` are left out of the mean; an all-void batch gives 0.
  """
  labels = labels.astype(jnp.int32)
  valid = labels != IGNORE
  losses = optax.softmax_cross_entropy_with_integer_labels(
      logits.astype(jnp.float32), jnp.where(valid, labels, 0))
  return jnp.sum(losses * valid) / jnp.maximum(jnp.sum(valid), 1)


def pair_loss(logits_a, logits_b, mask_a, mask_b):
  """Loss of a pair batch: cross-entropy of image A plus that of image B."""
  return cross_entropy(logits_a, mask_a) + cross_entropy(logits_b, mask_b)
