"""Evaluation, apart from training: one module per protocol and a shared report.

* ``modes``: a mode as data (protocol x segmenter x partner gate);
* ``pairs``, ``groups``, ``distractor``: the protocols;
* ``steps``: the jitted pair-model step (also used by validation during training);
* ``saliency``: co-saliency metrics of saved maps (S-, E-, F-measure, MAE);
* ``report``: the JSON report and its text tables;
* ``common.build(protocol, config, modes)``: any protocol's evaluator, run as
  ``.run(model, variables)`` -> {mode: result} (``eval.py`` and validation during training);
* ``evaluate.run``: a checkpoint in a list of modes -> the report (``eval.py``).
"""
