"""Guards of a training workdir: one run at a time, and a restart with the run's own config.

* ``Lock``: ``<workdir>/train.lock`` names the holder (host, pid). A second training on
  the same workdir is refused naming it; a lock whose process is gone (a killed run on
  this host) is taken over.
* ``write_config``: the run's ``config.json``. A restart of a run that has checkpoints,
  with a config that differs from the saved one, is refused before anything is
  written, naming every key that differs; with ``allow_changes`` the keys of
  ``SAFE_CHANGES`` (which do not change the model, the data or the optimisation already
  done) may differ, and are recorded. Without checkpoints there is nothing to resume
  (a start that failed, e.g. on a wrong data folder), and the new config is written.
"""

import json
import os
import socket

from flax import traverse_util

import coseg_jax
from coseg_jax import config as config_lib, files
from coseg_jax.errors import UserError

LOCK_FILE = "train.lock"
CONFIG_FILE = "config.json"
# Keys a resumed run may change (with allow_changes): how long, how often it logs,
# validates and saves, and how the batches are prepared; never the model, the data,
# the optimiser or the seed.
SAFE_CHANGES = frozenset({
    "train.num_steps", "train.log_every", "train.eval_every", "train.checkpoint_every",
    "train.keep_checkpoints", "eval.max_batches", "data.num_threads", "data.prefetch",
})


class WorkdirError(UserError):
  """The workdir cannot be used: locked, written with another config, or not writable."""


def make(workdir):
  """Creates ``workdir`` (and parents) -> its absolute path; one-line error if it cannot."""
  path = os.path.abspath(workdir)
  try:
    files.writable_folder(path, "the workdir")
  except OSError as e:
    raise WorkdirError(f"cannot write {e}") from e
  return path


def _alive(pid):
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # another user's live process
    return True
  return True


class Lock:
  """``with Lock(workdir):`` holds ``<workdir>/train.lock`` for one training run."""

  def __init__(self, workdir, enabled=True):
    self.path = os.path.join(workdir, LOCK_FILE)
    self.enabled = enabled
    self.taken_over = None  # the holder of a stale lock replaced by this one

  def __enter__(self):
    if not self.enabled:
      return self
    holder = {"host": socket.gethostname(), "pid": os.getpid()}
    for _ in range(2):
      try:
        fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
      except FileExistsError:
        self._check_stale()
        continue
      with os.fdopen(fd, "w") as f:
        json.dump(holder, f)
      return self
    raise WorkdirError(f"cannot take the lock {self.path}")

  def _check_stale(self):
    """Removes the lock if its process is gone (on this host); else raises naming it."""
    try:
      with open(self.path) as f:
        holder = json.load(f)
      host, pid = holder["host"], int(holder["pid"])
    except (OSError, ValueError, KeyError, TypeError):
      host, pid = None, None  # unreadable: a run killed while writing it
    if host == socket.gethostname() and _alive(pid):
      raise WorkdirError(f"{os.path.dirname(self.path)} is in use by another training run "
                         f"(host {host}, pid {pid}); wait for it or stop it first")
    if host not in (None, socket.gethostname()):
      raise WorkdirError(f"{os.path.dirname(self.path)} is in use by a training run on host "
                         f"{host} (pid {pid}); if that run is gone, delete {self.path}")
    self.taken_over = {"host": host, "pid": pid}
    try:
      os.remove(self.path)
    except FileNotFoundError:
      pass

  def __exit__(self, *exc):
    if self.enabled:
      try:
        os.remove(self.path)
      except FileNotFoundError:
        pass


def _flat(tree):
  """{"data.views.crops": value, ...} of a nested dict."""
  return traverse_util.flatten_dict(tree, sep=".")


def _plain(config):
  """The config as JSON values (tuples become lists), for comparison with the saved one."""
  return json.loads(json.dumps(config.to_dict(), default=str))


def read_saved(workdir):
  """The saved config.json record, or None if the workdir has none."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      saved = json.load(f)
    saved["config"]  # pylint: disable=pointless-statement
  except (OSError, ValueError, KeyError) as e:
    raise WorkdirError(f"{path} cannot be read as a run config ({e}); move it away to start "
                       "a new run here, or use another workdir") from e
  return saved


def has_checkpoints(workdir):
  folder = os.path.join(workdir, "checkpoints")
  return os.path.isdir(folder) and any(name.isdigit() for name in os.listdir(folder))


def config_changes(saved_config, config):
  """{key: (saved value, new value)} for every key that differs (missing = None); the saved
  config of an older run is read with today's keys (``coseg_jax.config.migrate``)."""
  old, new = _flat(config_lib.migrate(saved_config)), _flat(_plain(config))
  return {k: (old.get(k), new.get(k)) for k in sorted(set(old) | set(new))
          if old.get(k) != new.get(k)}


def write_config(workdir, config, allow_changes=False, versions=None):
  """Writes ``config.json`` after checking it against the saved one (see the module doc)."""
  saved = read_saved(workdir) if has_checkpoints(workdir) else None
  changes = {} if saved is None else config_changes(saved["config"], config)
  if changes:
    listed = "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changes.items())
    unsafe = sorted(set(changes) - SAFE_CHANGES)
    where = os.path.join(os.path.abspath(workdir), CONFIG_FILE)
    if unsafe:
      raise WorkdirError(f"the config differs from the run's {where} in {listed}: refusing to "
                         f"resume with changed {', '.join(unsafe)} (use a new workdir)")
    if not allow_changes:
      raise WorkdirError(f"the config differs from the run's {where} in {listed}: pass "
                         "--allow_config_changes to resume with these changes")
  record = {"config": _plain(config), "coseg_jax_version": coseg_jax.__version__,
            **(versions or {})}
  history = (saved or {}).get("changes", [])
  if changes:
    history = history + [{k: list(v) for k, v in changes.items()}]
  if history:
    record["changes"] = history
  path = os.path.join(workdir, CONFIG_FILE)
  with open(path + ".tmp", "w") as f:
    json.dump(record, f, indent=2, default=str)
  os.replace(path + ".tmp", path)
