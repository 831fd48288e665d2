"""Flax modules of the co-segmentation network (paper §3)."""

from coseg_jax.models.coseg import ATTENTIONS, CoSegNet

__all__ = ["ATTENTIONS", "CoSegNet"]
