"""Flax modules of the co-segmentation network (paper §3)."""

import jax.numpy as jnp

from coseg_jax.errors import BadValue
from coseg_jax.models.coseg import CoSegNet, check_size, is_size

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def build(model_config):
  """CoSegNet from ``config.model`` (see coseg_jax/config.py for the keys)."""
  if model_config.dtype not in DTYPES:
    raise BadValue(f"config.model.dtype must be one of {sorted(DTYPES)}, "
                   f"got {model_config.dtype!r}")
  return CoSegNet(
      attention=model_config.attention,
      encoder_widths=tuple(model_config.encoder_widths),
      encoder_convs=tuple(model_config.encoder_convs),
      encoder_batch_norm=model_config.encoder_batch_norm,
      decoder_widths=tuple(model_config.decoder_widths),
      dropout_rate=model_config.dropout_rate,
      dtype=DTYPES[model_config.dtype],
      decoder_type=model_config.decoder_type,
      skip=model_config.skip,
      cue=model_config.cue,
  )


__all__ = ["CoSegNet", "build", "check_size", "is_size"]
