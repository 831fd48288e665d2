"""Helpers shared by the benchmark scripts: machine facts, timing, peak RSS sampling, JSON output."""

import collections
import contextlib
import json
import os
import platform
import threading
import time

import jax
from jax import lax
import numpy as np

from coseg_jax.models import conv

# Ops a benchmark builds the model with (models.conv; the module attribute ``ops``): "fast"
# = conv.FAST, the default (the CPU kernel and max-pool gradients); "xla" = conv.XLA (XLA's
# own gradients); "kernel_only" and "pool_only" keep one of the two rewrites.
OPS = {"fast": conv.FAST, "xla": conv.XLA,
       "kernel_only": conv.Ops(conv.conv_general_dilated, conv.flax_max_pool_2x2),
       "pool_only": conv.Ops(lax.conv_general_dilated, conv.max_pool_2x2)}


def machine_info():
  """Versions and hardware of this run, written next to every result."""
  info = {
      "python": platform.python_version(),
      "jax": jax.__version__,
      "backend": jax.default_backend(),
      "devices": [str(d) for d in jax.devices()],
      "cpu_count": os.cpu_count(),
      "processor": platform.processor() or platform.machine(),
  }
  try:
    import torch  # pylint: disable=g-import-not-at-top
    info["torch"] = torch.__version__
  except ImportError:
    pass
  return info


def current_rss_bytes():
  with open("/proc/self/statm") as f:
    return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
  """Context manager sampling the process RSS every ``interval`` s; ``.peak`` in bytes."""

  def __init__(self, interval=0.002):
    self.interval, self.peak = interval, 0
    self._stop = threading.Event()

  def _sample(self):
    while not self._stop.is_set():
      self.peak = max(self.peak, current_rss_bytes())
      time.sleep(self.interval)

  def __enter__(self):
    self.peak = current_rss_bytes()
    self._thread = threading.Thread(target=self._sample, daemon=True)
    self._thread.start()
    return self

  def __exit__(self, *exc):
    self._stop.set()
    self._thread.join()
    self.peak = max(self.peak, current_rss_bytes())


@contextlib.contextmanager
def compile_counts():
  """Counts XLA compiles by function name while the block runs (public ``jax.monitoring``)."""
  counts = collections.Counter()

  def listen(event, _duration, fun_name=None, **_):
    if event == "/jax/core/compile/backend_compile_duration":
      counts[str(fun_name).removeprefix("jit(").removesuffix(")")] += 1  # "jit(f)" -> "f"

  jax.monitoring.register_event_duration_secs_listener(listen)
  try:
    yield counts
  finally:
    jax.monitoring.unregister_event_duration_listener(listen)


def median_seconds(fn, repeats, warmup=1):
  """Median wall time of ``repeats`` calls of ``fn`` after ``warmup`` untimed calls."""
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def write_json(path, payload):
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w") as f:
    json.dump({"machine": machine_info(), **payload}, f, indent=2)
  print(f"wrote {path}")


def print_table(rows, columns):
  """Prints ``rows`` (dicts) as an aligned text table of ``columns``."""
  cells = [[str(c) for c in columns]] + [[_fmt(row.get(c, "")) for c in columns] for row in rows]
  widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
  for r in cells:
    print("  ".join(v.rjust(w) for v, w in zip(r, widths)))


def _fmt(value):
  return f"{value:.4g}" if isinstance(value, float) else str(value)
