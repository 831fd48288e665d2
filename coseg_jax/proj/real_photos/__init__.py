"""The CPU real-photo recipe (``configs/cpu_frozen.py``): a frozen real VGG16, the attention
learner and decoder trained on cached features of augmented views and composites, and the
partner gate applied after the model. Not the paper's; docs/results.md measures each
ingredient and research_log.md beside this file tells what was tried.

* ``recipe``: its config keys and its hooks into the library (``config.recipe`` names it);
* ``views``: augmented views and composites of a folder dataset; ``view_cache``: encoded
  once and cached;
* ``pairs``: pairs that reward following the partner (pasted pairs, lacking pairs; off
  by default);
* ``partner_gate``: an inference step with no weights (``GATE``, for ``segment_group``,
  ``segment_pairwise`` and the evaluators).
"""
