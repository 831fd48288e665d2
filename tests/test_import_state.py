"""Importing coseg_jax leaves JAX as it found it: no rule table, config value or logging
setting of a researcher's process changes because the package was imported next to it.

The check runs in a fresh interpreter: the third-party modules coseg_jax imports are
imported first (their own registrations are not ours), then JAX's rule tables, its config,
the logging setup and the environment are snapshotted, every coseg_jax module is imported
and the snapshot is compared, entry by entry and by identity. The absl flags are part of
the snapshot: the commands (``coseg_jax.apps``) define theirs only when they run.
"""

import subprocess
import sys
import textwrap

from conftest import REPO

CHILD = textwrap.dedent(r'''
  import ast, importlib, logging, os, pathlib, pkgutil, sys

  # modules behind the optional extras of pyproject.toml; absent ones are skipped
  OPTIONAL = {"torch", "tensorflow_datasets", "array_record", "importlib_resources",
              "py_sod_metrics"}
  OWN = {"coseg_jax", "configs"}


  def module_level_imports(path):
    """Top-level names of the modules imported outside functions by the file at path."""
    names, todo = set(), list(ast.parse(path.read_text()).body)
    while todo:
      node = todo.pop()
      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
        continue
      if isinstance(node, ast.Import):
        names.update(a.name for a in node.names)
      elif isinstance(node, ast.ImportFrom) and node.level == 0:
        names.add(node.module)
      todo.extend(ast.iter_child_nodes(node))
    return {n for n in names if n.split(".")[0] not in OWN}


  def try_import(name):
    try:
      importlib.import_module(name)
    except ModuleNotFoundError as e:
      if (e.name or "").split(".")[0] not in OPTIONAL:
        raise
      print("skipped", name, "(needs", e.name + ")")


  def snapshot():
    from jax.interpreters import ad, batching, mlir, partial_eval  # the public re-exports
    import jax
    tables = {}
    for module in (ad, batching, mlir, partial_eval):
      for name, table in vars(module).items():
        if isinstance(table, dict) and not name.startswith("__"):
          tables[f"{module.__name__}.{name}"] = dict(table)
          for key, inner in table.items():
            if isinstance(inner, dict):
              tables[f"{module.__name__}.{name}[{key!r}]"] = dict(inner)
    loggers = {name: (logger.level, list(logger.handlers), logger.propagate, logger.disabled)
               for name, logger in logging.Logger.manager.loggerDict.items()
               if isinstance(logger, logging.Logger)}
    root = logging.getLogger()
    loggers[""] = (root.level, list(root.handlers), root.propagate, root.disabled)
    from absl import flags
    return {"tables": tables, "config": dict(jax.config.values), "loggers": loggers,
            "environ": dict(os.environ), "flags": {name: id(flags.FLAGS[name])
                                                   for name in flags.FLAGS}}


  def changes(before, after):
    """Table entries added, removed or replaced (by identity), config values and environment
    variables changed, and loggers that existed before with another level or handlers."""
    found = []
    for name, old in before["tables"].items():
      new = after["tables"].get(name, {})
      found += [f"{name}[{key}]: {old.get(key)} -> {new.get(key)}"
                for key in old.keys() | new.keys() if old.get(key) is not new.get(key)]
    found += [f"new table {name}" for name in after["tables"].keys() - before["tables"].keys()]
    for kind in ("config", "environ", "loggers", "flags"):
      keys = before[kind].keys() | (after[kind].keys() if kind != "loggers" else set())
      found += [f"{kind}[{key!r}]: {before[kind].get(key)!r} -> {after[kind].get(key)!r}"
                for key in keys if before[kind].get(key) != after[kind].get(key)]
    return found


  package = pathlib.Path(sys.argv[1]) / "coseg_jax"
  for path in sorted(package.rglob("*.py")):
    for name in sorted(module_level_imports(path)):
      try_import(name)
  before = snapshot()
  import coseg_jax
  for info in pkgutil.walk_packages(coseg_jax.__path__, "coseg_jax."):
    try_import(info.name)
  found = changes(before, snapshot())
  print("\n".join(found) or "unchanged")
  sys.exit(1 if found else 0)
''')


def test_importing_coseg_jax_changes_no_jax_table_config_or_logging():
  result = subprocess.run([sys.executable, "-c", CHILD, str(REPO)], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
