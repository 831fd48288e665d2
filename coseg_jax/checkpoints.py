"""Checkpoints of training runs: writing (one Orbax manager) and reading (one resolver).

A run folder (the training workdir) holds ``config.json`` and ``checkpoints/<step>/``,
each step with the train state (``state``), the data iterator's state (``data``) and,
after a validation, its metrics (``metrics``: ``{"val_jaccard": ...}``). One
``CheckpointManager`` keeps the latest ``keep`` steps and the best step by validation
Jaccard (a preservation policy), so no second folder is needed; runs written before
kept the best step in ``best/<step>/``, which still reads.

Reading (evaluation, ``segment``) restores the parameters and BatchNorm statistics only,
never the optimizer state, and does not import the optimizer. ``resolve`` accepts a
workdir, a ``checkpoints/`` or ``best/`` folder, one step folder or a released reference
checkpoint file (.npz / .pkl / .pth). A step that cannot be read (a corrupt or truncated
file) is skipped with a warning naming it, and the newest intact one is used instead,
unless the step was named explicitly.
"""

import contextlib
import dataclasses
import json
import logging
import math
import os
import pathlib
import shutil

from etils import epath
import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

from coseg_jax.errors import UserError

ITEMS = ("state", "data")
BEST_METRIC = "val_jaccard"
RELEASED_SUFFIXES = (".npz", ".pkl", ".pth")
SET_ASIDE = "unreadable_checkpoints"  # where training moves steps it could not restore


class CheckpointError(UserError):
  """A checkpoint cannot be found, read or written; the message names the path."""


def _best_metric(metrics):
  return metrics.get(BEST_METRIC, -math.inf)


# ----------------------------------------------------------------------------- writing
def manager(workdir, keep):
  """The run's one manager: the latest ``keep`` steps plus the best by validation Jaccard.

  Saves are asynchronous on accelerators (the device keeps training while the host
  writes) and synchronous on CPU, where they would compete with the step for the cores.
  """
  policy = checkpoint_managers.preservation_policy
  options = ocp.CheckpointManagerOptions(
      create=True, enable_async_checkpointing=jax.default_backend() != "cpu",
      best_fn=_best_metric, best_mode="max",
      preservation_policy=policy.AnyPreservationPolicy([
          policy.LatestN(n=keep),
          policy.BestN(get_metric_fn=_best_metric, n=1, keep_checkpoints_without_metrics=False),
      ]))
  return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), "checkpoints"),
                               item_names=ITEMS, options=options)


def save(checkpoints, step, state, data_state, val_jaccard=None):
  """Writes step ``step``; a failed write (full disk, no permission) -> ``CheckpointError``.

  Orbax writes into a temporary folder and renames it when complete, so the earlier
  steps stay intact whatever happens to this one; the temporary folder of a failed
  write is removed (it would hold the space a full disk lacks).
  """
  metrics = {} if val_jaccard is None else {BEST_METRIC: float(val_jaccard)}
  try:
    with _quiet_orbax():  # its threads log every write error with a traceback
      checkpoints.save(step, metrics=metrics, args=ocp.args.Composite(
          state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state)))
  except (OSError, ValueError) as e:
    if not _is_write_error(e):
      raise
    _remove_partial(checkpoints, step)
    raise CheckpointError(_write_error(checkpoints, step, e)) from e


def finish(checkpoints):
  """Waits for an asynchronous save; a failed write -> ``CheckpointError``."""
  try:
    checkpoints.wait_until_finished()
  except (OSError, ValueError) as e:
    if not _is_write_error(e):
      raise
    raise CheckpointError(_write_error(checkpoints, None, e)) from e


@contextlib.contextmanager
def _quiet_orbax():
  logger = logging.getLogger("absl")
  level = logger.level
  logger.setLevel(logging.CRITICAL)
  try:
    yield
  finally:
    logger.setLevel(level)


# How TensorStore (under Orbax) reports an operating-system error: a ValueError whose
# message carries the status and errno.
STORAGE_ERRORS = ("os_error_code", "RESOURCE_EXHAUSTED", "PERMISSION_DENIED")
# Operating-system reasons a message names rather than quoting TensorStore's long text.
KNOWN_REASONS = ("No space left on device", "Disk quota exceeded", "Read-only file system",
                 "Permission denied")


def _is_write_error(error):
  return isinstance(error, OSError) or any(s in str(error) for s in STORAGE_ERRORS)


def _remove_partial(checkpoints, step):
  for partial in pathlib.Path(str(checkpoints.directory)).glob(f"{step}.orbax-checkpoint-tmp*"):
    shutil.rmtree(partial, ignore_errors=True)


def _write_error(checkpoints, step, error):
  kept = sorted(s for s in checkpoints.all_steps() if s != step)
  kept = f"steps {kept} are intact" if kept else "no earlier checkpoint exists"
  what = f"checkpoint {step}" if step is not None else "a checkpoint"
  reason = next((r for r in KNOWN_REASONS if r in str(error)), None)
  reason = reason or getattr(error, "strerror", None) or _short(error)
  return f"cannot write {what} in {checkpoints.directory}: {reason} ({kept})"


def restore_latest(checkpoints, abstract_state, warn):
  """(step, state, data state) of the newest step that restores; (0, None, None) if none.

  Unreadable newer steps are moved to ``<workdir>/unreadable_checkpoints/`` (kept, and out
  of the way of the steps training writes again) with ``warn`` naming each. Raises
  ``CheckpointError`` if steps exist but none restores.
  """
  bad = []
  for step in sorted(checkpoints.all_steps(), reverse=True):
    try:
      restored = checkpoints.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()))
    except Exception as e:  # pylint: disable=broad-except  # any unreadable file
      bad.append((step, e))
      continue
    for bad_step, error in bad:
      moved = _set_aside(checkpoints, bad_step)
      warn(f"warning: checkpoint step {bad_step} is unreadable ({_short(error)}); moved it to "
           f"{moved} and resumed from step {step}")
    if bad:
      checkpoints.reload()
    return step, restored["state"], restored["data"]
  if bad:
    steps = ", ".join(f"{s} ({_short(e)})" for s, e in bad)
    raise CheckpointError(f"no checkpoint in {checkpoints.directory} can be restored: {steps}")
  return 0, None, None


def _set_aside(checkpoints, step):
  folder = pathlib.Path(str(checkpoints.directory))
  target = folder.parent / SET_ASIDE / str(step)
  target.parent.mkdir(exist_ok=True)
  if target.exists():
    shutil.rmtree(target)
  shutil.move(folder / str(step), target)
  return target


def _short(error):
  """The first line of an exception's message, at most 160 characters."""
  text = str(error).strip().splitlines()
  return f"{type(error).__name__}: {text[0][:160] if text else ''}"


# ----------------------------------------------------------------------------- reading
@dataclasses.dataclass(frozen=True)
class Checkpoint:
  """What ``resolve`` found: a released file, or step folders of a run to try in order.

  ``steps`` are step folders, the one to use first; the rest are fallbacks (newest
  first) when it cannot be read. ``run_dir`` holds the run's config.json.
  """
  path: pathlib.Path  # the released file, or the first step folder
  run_dir: pathlib.Path
  steps: tuple = ()

  @property
  def released(self):
    return not self.steps

  @property
  def step(self):
    return None if self.released else int(self.path.name)


def _is_step(path):
  return path.name.isdigit() and (path / "state").is_dir()


def _steps(folder):
  """Step folders of ``folder``, newest first."""
  return sorted((p for p in folder.iterdir() if _is_step(p)), key=lambda p: -int(p.name))


def _validated(folder):
  """Step folders of ``folder`` with a validation Jaccard, best first."""
  scored = []
  for path in _steps(folder):
    try:
      scored.append((json.loads((path / "metrics" / "metrics").read_text())[BEST_METRIC], path))
    except (OSError, ValueError, KeyError):
      continue
  return [path for _, path in sorted(scored, key=lambda x: -x[0])]


def resolve(path, run_dir=None):
  """A checkpoint given by the user -> ``Checkpoint`` (raises ``CheckpointError``).

  Args:
    path: a workdir (its latest step), its ``checkpoints/`` folder (latest step), its
      ``best/`` folder (the best validated step; an old run's ``best/`` folder of steps),
      one step folder (that step, no fallback), or a released ``.npz``/``.pkl``/``.pth``.
    run_dir: the run folder holding config.json, when it is not the one above the
      checkpoints (a workdir given with ``--workdir`` beside ``--checkpoint``).
  """
  path = pathlib.Path(path).expanduser().absolute()
  if path.is_file():
    if path.suffix not in RELEASED_SUFFIXES:
      raise CheckpointError(f"checkpoint {path}: a file must be a released checkpoint "
                            f"({', '.join(RELEASED_SUFFIXES)}); for a training run give its "
                            "workdir or a step folder")
    return Checkpoint(path, pathlib.Path(run_dir or path.parent))
  if path.name == "best" and not path.exists() and (path.parent / "checkpoints").is_dir():
    steps, folder = _validated(path.parent / "checkpoints"), path.parent / "checkpoints"
    if not steps:
      raise CheckpointError(f"no validated checkpoint in {folder} (the best step is chosen by "
                            "validation Jaccard; set config.train.eval_every)")
  elif not path.is_dir():
    raise CheckpointError(f"checkpoint not found: {path}")
  elif _is_step(path):
    steps, folder = [path], path.parent
  else:
    folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    steps = _steps(folder)
  if not steps:
    raise CheckpointError(f"no checkpoint in {path}: expected step folders such as "
                          f"{folder}/1000 (written by train.py)")
  return Checkpoint(steps[0], pathlib.Path(run_dir or folder.parent).absolute(), tuple(steps))


def read_variables(step_dir):
  """{"params", "batch_stats"} of one step folder as numpy arrays (no optimizer state)."""
  state_dir = epath.Path(step_dir) / "state"
  handler = ocp.PyTreeCheckpointHandler()
  tree = handler.metadata(state_dir).tree
  wanted = {k: tree[k] for k in ("params", "batch_stats")}
  return ocp.Checkpointer(handler).restore(state_dir, args=ocp.args.PyTreeRestore(
      item=jax.tree.map(lambda _: 0, wanted), partial_restore=True,
      restore_args=jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), wanted)))


def load_variables(found, warn=print):
  """(the step folder read, {"params", "batch_stats"}) of a resolved run checkpoint.

  A step that cannot be read is skipped for the next one, ``warn`` naming it; if none
  can be read (or the one named explicitly cannot), ``CheckpointError`` names them.
  """
  bad = []
  for step_dir in found.steps:
    try:
      variables = read_variables(step_dir)
    except Exception as e:  # pylint: disable=broad-except  # any unreadable file
      bad.append(f"{step_dir} ({_short(e)})")
      continue
    for message in bad:
      warn(f"warning: checkpoint {message} is unreadable; using {step_dir}")
    return step_dir, variables
  raise CheckpointError(f"cannot read checkpoint {'; nor '.join(bad)}")
