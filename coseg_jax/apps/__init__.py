"""The commands the package installs, all with absl flags (``--flag=value``, underscores,
``--debug`` for a traceback, one line ``error: ...`` and exit status 1 on an expected error):

* ``train``: ``python train.py`` / ``coseg-train`` (``train_main``);
* ``eval``: ``python eval.py`` / ``coseg-eval`` (``eval_main``);
* ``segment``: ``coseg-segment`` / ``python -m coseg_jax.apps.segment``;
* ``port_weights``: ``python -m coseg_jax.apps.port_weights``;
* ``release``: a trained run as one file with a model card, ``python -m coseg_jax.apps.release``;
* ``scores``: co-saliency metrics of a folder of maps, ``python -m coseg_jax.apps.scores``;
* the data commands: ``voc_pairs`` (VOC pair lists), ``tfds_build`` (TFDS datasets) and
  ``synthetic_stats`` (the synthetic set's oracle), ``python -m coseg_jax.apps.NAME``.
"""
