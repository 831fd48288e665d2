"""coseg_jax.apps.cli: user errors are one line, bugs show their traceback."""

import errno
import subprocess
import sys

from absl import flags
import pytest

from coseg_jax.apps import cli
from coseg_jax.errors import BadValue, MissingExtra, UserError
from coseg_jax.training.trainer import NonFiniteLossError


def define(fv):
  flags.DEFINE_string("fail", "", "what the command raises", flag_values=fv)


def command(fv, args):
  del args
  if fv.fail == "bug":
    raise TypeError("unsupported operand type(s) for +: 'int' and 'str'")  # a planted bug
  if fv.fail == "user":
    raise UserError("config.data.root = '/nope': no such folder")


def test_a_bug_propagates_and_a_user_error_is_one_line():
  with pytest.raises(TypeError, match="unsupported operand"):
    cli.main(define, command, ["--fail=bug"])
  with pytest.raises(SystemExit, match=r"^error: config.data.root = '/nope': no such folder$"):
    cli.main(define, command, ["--fail=user"])
  with pytest.raises(SystemExit, match="^error: Unknown command line flag 'nope'$"):  # a flag error
    cli.main(define, command, ["--nope=1"])


@pytest.mark.parametrize("error, user", [
    (FileNotFoundError(errno.ENOENT, "No such file or directory", "/data/x.png"), True),
    (FileNotFoundError("config.data.root = '/nope': no such folder"), True),  # the library's
    (OSError(errno.ENOSPC, "No space left on device"), True),
    (OSError(errno.EBADF, "Bad file descriptor"), False),  # no path: a bug
    (BadValue("config.batch_size = 0 is invalid"), True),  # the library's checks
    (MissingExtra("refine='crf' needs pydensecrf2"), True),
    (NonFiniteLossError("the loss became nan at step 3"), True),
    (ValueError("operands could not be broadcast together"), False),  # numpy's: a bug
    (ImportError("cannot import name 'x' from 'coseg_jax.maps'"), False),
    (KeyError("params"), False),
    (AttributeError("'NoneType' object has no attribute 'shape'"), False),
])
def test_which_errors_are_the_users(error, user):
  assert cli.is_user_error(error) == user


def test_a_planted_bug_prints_its_traceback_from_the_command_line():
  script = ("from coseg_jax.apps import cli\n"
            "def command(fv, args):\n"
            "  return 1 + 'a'\n"
            "cli.main(lambda fv: None, command, [])\n")
  result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, check=False)
  assert result.returncode == 1
  assert "Traceback (most recent call last)" in result.stderr
  assert "TypeError: unsupported operand" in result.stderr
  assert "error: " not in result.stderr.replace("TypeError: ", "")
