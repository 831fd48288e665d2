"""What every command shares (train.py, eval.py, segment, ...): absl flags and error handling.

A user error (``is_user_error``: a bad flag or config value, a missing or unreadable
file, a full disk, a locked workdir) prints one line ``error: <what and where>`` to stderr
and exits with status 1; Ctrl-C exits with 130. Anything else is a bug and shows its
traceback. ``--debug`` (or ``COSEG_DEBUG=1`` in the environment) shows the traceback of
a user error too.
"""

import errno

import logging
import os
import sys

from absl import flags
from absl import logging as absl_logging

from coseg_jax.errors import UserError

DEBUG_ENV = "COSEG_DEBUG"
DEBUG_HELP = f"show the full traceback of an error (or set {DEBUG_ENV}=1)"
# The library's own errors (errors.UserError: BadValue, MissingExtra, the workdir's and the
# checkpoints' errors, a NaN loss) and absl's flag errors; anything else is a bug.
USER_ERRORS = (UserError, flags.Error)
# OSErrors of the machine rather than of a file: a full disk or quota
DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
INTERRUPTED = 130  # 128 + SIGINT, the shell's code for Ctrl-C


def debug_requested(flag=False):
  return bool(flag) or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def message(error):
  """``error`` as one line: its message (the key's name for a KeyError), newlines joined."""
  text = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
  lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
  return " ".join(lines) or type(error).__name__


def is_user_error(error):
  """Whether ``error`` tells the user what to fix (printed as one line), not a bug.

  An ``OSError`` is one when it names a path (a missing file, a permission), is a full
  disk, or was raised by this library with its own message (no errno).
  """
  if isinstance(error, OSError):
    return error.filename is not None or error.errno is None or error.errno in DISK_ERRNOS
  return isinstance(error, USER_ERRORS)


def run(fn, debug=False):
  """Calls ``fn()``; a user error exits with one line (unless debugging), any other
  exception propagates with its traceback."""
  try:
    return fn()
  except KeyboardInterrupt:
    if debug_requested(debug):
      raise
    print("interrupted", file=sys.stderr)
    sys.exit(INTERRUPTED)
  except Exception as e:  # pylint: disable=broad-exception-caught
    if not is_user_error(e) or debug_requested(debug):
      raise
    # Libraries left mid-operation (Orbax after a failed write) may complain while the
    # interpreter shuts down; the one line below already says what went wrong.
    sys.unraisablehook = lambda _: None
    raise SystemExit(f"error: {message(e)}") from None  # printed to stderr, status 1


def parse(flag_values, argv):
  """``flag_values(argv)``: a bad flag, config file or ``--config.<key>`` raises one error
  naming it (an unknown config key as ``UserError``)."""
  saved = sys.argv
  sys.argv = list(argv)  # ml_collections finds the --config.<key> overrides in sys.argv
  try:
    return flag_values(argv)
  except (AttributeError, KeyError) as e:  # ml_collections: no such key in the config
    key = message(e).strip("'\"")
    given = [a.split("=")[0] for a in argv if a.startswith("--config.") and key in a]
    raise UserError(f"unknown config key {given[0] if given else key}: no such key in "
                    "the config (see coseg_jax/config.py)") from e
  except TypeError as e:  # ml_collections: a --config.<key> value of the wrong type
    raise UserError(message(e)) from e
  finally:
    sys.argv = saved


def no_arguments(args):
  """For commands that take flags only: a stray argument is an error naming it."""
  if args:
    raise flags.Error(f"unexpected arguments: {args} (flags are --name=value)")


def command_flags(define):
  """A ``FlagValues`` of a command's own: ``define(flag_values)``'s flags plus ``--debug`` and
  ``--verbosity``, which every command takes (tests/test_docs.py checks documented flags here)."""
  flag_values = flags.FlagValues()
  define(flag_values)
  flags.DEFINE_bool("debug", False, DEBUG_HELP, flag_values=flag_values)
  flags.DEFINE_integer("verbosity", logging.WARNING, "Python logging level of the libraries' "
                       "logs (20 = INFO; default WARNING: Orbax's INFO logs are many).",
                       flag_values=flag_values)
  return flag_values


def main(define, command, argv=None, doc=""):
  """Runs a command: ``define(flag_values)`` declares its flags in a ``FlagValues`` of its
  own (importing a command module defines no global flag), ``argv`` (default
  ``sys.argv[1:]``) is parsed into them, and ``command(flag_values, args)`` runs with the
  other arguments. ``--help`` prints ``doc`` and the flags; every expected error is one line.
  """
  argv = sys.argv[1:] if argv is None else list(argv)
  flag_values = command_flags(define)
  if {"-h", "--help", "--helpfull"} & set(argv):
    prog = os.path.basename(sys.argv[0]) or "command"
    print(f"usage: {prog} [flags]\n\n{doc.strip()}\n\nflags:\n{flag_values.get_help()}")
    return
  args = run(lambda: parse(flag_values, [sys.argv[0], *argv]), debug="--debug" in argv)[1:]
  absl_logging.set_verbosity(absl_logging.converter.standard_to_absl(flag_values.verbosity))
  run(lambda: command(flag_values, args), flag_values.debug)
