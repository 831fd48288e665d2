"""Training, apart from evaluation and inference (which never import it):

* ``trainer``: the train state, the jitted train step over a data-parallel mesh, the loop
  with logging, validation, checkpoints and signals (``train_and_evaluate``);
* ``workdir``: the run folder's guards (config.json, one training at a time, safe changes);
* ``feature_cache``: features of a frozen encoder, computed once (the CPU recipe);
* ``metric_log``: metrics.jsonl and TensorBoard, one row per step.
"""
