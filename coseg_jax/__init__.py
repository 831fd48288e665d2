"""coseg_jax: Semantic Aware Attention Based Deep Object Co-segmentation in JAX/Flax."""

from coseg_jax.group import segment_group, segment_pairwise
from coseg_jax.models import CoSegNet
from coseg_jax.preprocessing import preprocess
from coseg_jax.weights import init_variables, load_torchvision_vgg16

__version__ = "0.1.0"

__all__ = [
    "CoSegNet",
    "init_variables",
    "load_torchvision_vgg16",
    "preprocess",
    "segment_group",
    "segment_pairwise",
]
