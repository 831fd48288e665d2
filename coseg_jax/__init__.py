"""coseg_jax: Semantic Aware Attention Based Deep Object Co-segmentation in JAX/Flax.

The layers, each a folder or module (none imports a layer above it):

* the library: ``models/`` (the network), ``group`` (Algorithm 1), ``maps`` (probabilities
  -> masks), ``weights``, ``checkpoints``, ``runs`` (load a trained model), ``data/``,
  ``metrics``, ``losses``, ``config`` (every config key, one validator);
* ``evaluators/``: the evaluation protocols and their report (never imports training);
* ``training/``: the train loop, workdir guards, the feature cache;
* ``apps/``: the commands (train, eval, segment, port_weights, data);
* ``proj/real_photos/``: the CPU real-photo recipe (views, composites, partner gate);
* ``interop/``: the PyTorch twin (extra ``[torch]``).
"""

from coseg_jax.group import segment_group, segment_pairwise
from coseg_jax.maps import binarize
from coseg_jax.models import CoSegNet
from coseg_jax.preprocessing import preprocess
from coseg_jax.runs import load_run
from coseg_jax.weights import init_variables, load_torchvision_vgg16

__version__ = "0.2.0"

__all__ = [
    "CoSegNet",
    "binarize",
    "init_variables",
    "load_run",
    "load_torchvision_vgg16",
    "preprocess",
    "segment_group",
    "segment_pairwise",
]
