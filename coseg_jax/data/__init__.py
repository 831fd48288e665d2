"""The data layer: datasets of image pairs and groups, and the input pipeline.

* ``images``: robust decoding of image and mask files (PIL modes, EXIF, bit depth).
* ``voc``: PASCAL VOC 2012 co-segmentation pairs (training, paper §4.1).
* ``folders``: benchmark groups stored as folders (iCoseg, MSRC, Internet, your own).
* ``synthetic``: the procedural co-segmentation set (the no-download default).
* ``pipeline``: ``build`` (batches of pairs, resumable) and ``iterate_groups``.

Import the submodules (``from coseg_jax.data import pipeline``); see docs/data.md.
"""
