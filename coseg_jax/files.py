"""Checks of output paths, made before any work so that a long run never fails at its end."""

import os
import pathlib


def check_writable_file(path, what):
  """Raises, naming ``path`` and ``what`` goes there, unless a file can be written there
  (its folder is created)."""
  path = pathlib.Path(path)
  if path.is_dir():
    raise IsADirectoryError(f"cannot write {what} to {path}: it is a folder (give a file path)")
  _writable_folder(path.parent, f"cannot write {what} to {path}")


def writable_folder(path, what):
  """``path`` as a writable folder (created), or an error naming it and ``what``."""
  path = pathlib.Path(path)
  if path.exists() and not path.is_dir():
    raise NotADirectoryError(f"{what} {path}: it is a file; give a folder")
  _writable_folder(path, f"{what} {path}")
  return path


def _writable_folder(folder, context):
  try:
    folder.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    raise OSError(f"{context}: cannot create the folder {folder} ({e.strerror or e})") from e
  if not os.access(folder, os.W_OK):
    raise PermissionError(f"{context}: the folder {folder} is not writable")
