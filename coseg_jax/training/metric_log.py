"""Metric logs of a run: JSON lines and TensorBoard event files (tensorboardX, no TensorFlow)."""

import json
import os


class MetricWriter:
  """Writes ``{step, **scalars}`` to ``metrics.jsonl`` and TensorBoard; no-op when disabled.

  Only the primary process of a multi-host run enables it. A run resumed from step
  ``resume_step`` replays the steps after it, so their rows (written after the last
  checkpoint) are dropped from both logs first: one row per step.
  """

  def __init__(self, workdir, enabled=True, resume_step=0):
    self.enabled = enabled
    self.jsonl_path = os.path.join(workdir, "metrics.jsonl")
    self._tb = None
    if enabled:
      if os.path.exists(self.jsonl_path):
        keep_until(self.jsonl_path, resume_step)
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"),
                               purge_step=resume_step + 1 if resume_step else None)

  def write(self, step, scalars):
    if not self.enabled:
      return
    scalars = {k: float(v) for k, v in scalars.items()}
    with open(self.jsonl_path, "a") as f:
      f.write(json.dumps({"step": int(step), **scalars}) + "\n")
    for key, value in scalars.items():
      self._tb.add_scalar(key, value, int(step))
    self._tb.flush()

  def close(self):
    if self._tb is not None:
      self._tb.close()


def read_jsonl(path):
  """The records of a metrics.jsonl file, in order."""
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def keep_until(path, step):
  """Drops the records of a metrics.jsonl file after ``step`` (rewritten atomically)."""
  records = [r for r in read_jsonl(path) if r["step"] <= step]
  with open(path + ".tmp", "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in records)
  os.replace(path + ".tmp", path)
