"""The errors that tell a user what to fix: the command lines print them in one line, and
any other exception, a bug, with its traceback (``coseg_jax.apps.cli``)."""


class UserError(Exception):
  """An expected failure whose message names the file, key or value that is wrong."""


class BadValue(UserError, ValueError):
  """A wrong value: a config key, a flag, an argument, a file's content, an array's shape or
  dtype, named in the message. Also a ``ValueError``, for callers that catch those."""


class MissingExtra(UserError, ImportError):
  """An optional dependency (an extra of pyproject.toml) that is not installed."""
