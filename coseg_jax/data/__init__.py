"""The data layer: datasets of image pairs and groups, and the input pipeline.

* ``images``: robust decoding of image and mask files (PIL modes, EXIF, bit depth).
* ``voc``: PASCAL VOC 2012 co-segmentation pairs (training, paper §4.1).
* ``folders``: benchmark groups stored as folders (iCoseg, MSRC, Internet, your own).
* ``synthetic``: the procedural co-segmentation set (the no-download default).
* ``pipeline``: ``build`` (batches of pairs, resumable) and ``iterate_groups``.

See docs/data.md.
"""

from coseg_jax.data.images import ImageReadError
from coseg_jax.data.images import MaskMismatchError
from coseg_jax.data.images import MissingDataError
from coseg_jax.data.pipeline import build
from coseg_jax.data.pipeline import default_config
from coseg_jax.data.pipeline import iterate_groups

__all__ = ["ImageReadError", "MaskMismatchError", "MissingDataError", "build",
           "default_config", "iterate_groups"]
