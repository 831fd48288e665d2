"""The base of the errors that tell a user what to fix (the command lines print them in one line)."""


class UserError(Exception):
  """An expected failure whose message names the file, key or value that is wrong."""
