"""Command-line error handling shared by every command (train.py, eval.py, segment, ...).

An expected failure (a bad flag or config value, a missing or unreadable file, a full
disk, a locked workdir) prints one line ``error: <what and where>`` to stderr and exits
with status 1; Ctrl-C exits with 130. ``--debug`` (or ``COSEG_DEBUG=1`` in the
environment) shows the full traceback instead.
"""

import os
import sys

from absl import flags

from coseg_jax.errors import UserError

DEBUG_ENV = "COSEG_DEBUG"
DEBUG_HELP = f"show the full traceback of an error (or set {DEBUG_ENV}=1)"
# OSError covers missing files, permissions and full disks; ValueError bad values (and
# weights.WeightFileError); ArithmeticError a loss that became NaN; AttributeError,
# KeyError and TypeError a config key or value given on the command line; ImportError
# an optional package (torch) that is not installed.
EXPECTED = (OSError, ValueError, ArithmeticError, AttributeError, KeyError, TypeError,
            ImportError, flags.Error, UserError)
INTERRUPTED = 130  # 128 + SIGINT, the shell's code for Ctrl-C


def debug_requested(flag=False):
  return bool(flag) or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def message(error):
  """``error`` as one line: its message (the key's name for a KeyError), newlines joined."""
  text = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
  lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
  return " ".join(lines) or type(error).__name__


def run(fn, debug=False):
  """Calls ``fn()``; an expected error exits with one line (unless debugging)."""
  try:
    return fn()
  except KeyboardInterrupt:
    if debug_requested(debug):
      raise
    print("interrupted", file=sys.stderr)
    sys.exit(INTERRUPTED)
  except EXPECTED as e:
    if debug_requested(debug):
      raise
    # Libraries left mid-operation (Orbax after a failed write) may complain while the
    # interpreter shuts down; the one line below already says what went wrong.
    sys.unraisablehook = lambda _: None
    raise SystemExit(f"error: {message(e)}") from None  # printed to stderr, status 1


def parse_absl_flags(argv):
  """absl's flag parsing for ``app.run(main, flags_parser=cli.parse_absl_flags)``: a bad
  flag, config file or ``--config.<key>`` exits with one line naming it."""
  def parse():
    try:
      return flags.FLAGS(argv)
    except (AttributeError, KeyError) as e:  # ml_collections: no such key in the config
      key = message(e).strip("'\"")
      given = [a.split("=")[0] for a in argv if a.startswith("--config.") and key in a]
      raise KeyError(f"unknown config key {given[0] if given else key}: no such key in "
                     "the config (see coseg_jax/config.py)") from e
  return run(parse, debug="--debug" in argv)
