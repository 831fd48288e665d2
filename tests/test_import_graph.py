"""The layering of coseg_jax, read from the import statements of its source (docs: DESIGN).

* Nothing outside ``coseg_jax/proj/`` imports a recipe: the library reaches one only
  through ``config.recipe``, a module name that ``coseg_jax.config.load_recipe`` imports
  with importlib (the commands in ``apps/`` included).
* The evaluators never import training.
* No import cycle among coseg_jax's modules (imports inside functions count too).
"""

import ast
import pathlib

import pytest

PACKAGE = "coseg_jax"
ROOT = pathlib.Path(__file__).resolve().parents[1] / PACKAGE


def module_name(path, root):
  parts = list(path.relative_to(root.parent).with_suffix("").parts)
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(source, name, is_package, modules):
  """The coseg_jax modules of ``modules`` that ``source`` (of module ``name``) imports:
  ``from package import name`` imports ``package.name`` when that is a module, else
  ``package``."""
  found = set()
  base = name.split(".") if is_package else name.split(".")[:-1]
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, ast.Import):
      found.update(a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom):
      module = node.module or ""
      if node.level:
        module = ".".join(base[:len(base) - node.level + 1] + ([module] if module else []))
      found.update(f"{module}.{a.name}" if f"{module}.{a.name}" in modules else module
                   for a in node.names)
  return {m for m in found if m in modules and m != name}


def import_graph(root=ROOT):
  """{module: the coseg_jax modules it imports} of every module under ``root``."""
  sources = {module_name(p, root): (p.read_text(), p.name == "__init__.py")
             for p in root.rglob("*.py")}
  return {name: imported(source, name, is_package, sources)
          for name, (source, is_package) in sources.items()}


def is_under(module, package):
  return module == package or module.startswith(package + ".")


def recipe_imports(graph):
  """(importer, imported) pairs where a module outside proj/ imports one inside it."""
  proj = f"{PACKAGE}.proj"
  return sorted((a, b) for a, targets in graph.items() if not is_under(a, proj)
                for b in targets if is_under(b, proj))


def training_imports(graph):
  return sorted((a, b) for a, targets in graph.items()
                if is_under(a, f"{PACKAGE}.evaluators")
                for b in targets if is_under(b, f"{PACKAGE}.training"))


def cycle(graph):
  """One import cycle as a list of modules, or None."""
  state = {}

  def visit(node, path):
    state[node] = "open"
    for nxt in sorted(graph[node]):
      if state.get(nxt) == "open":
        return path[path.index(nxt):] + [nxt]
      if nxt not in state:
        found = visit(nxt, path + [nxt])
        if found:
          return found
    state[node] = "done"
    return None

  for start in sorted(graph):
    if start not in state:
      found = visit(start, [start])
      if found:
        return found
  return None


def test_no_module_outside_proj_imports_a_recipe():
  assert recipe_imports(import_graph()) == []


def test_evaluators_never_import_training():
  assert training_imports(import_graph()) == []


def test_no_import_cycle():
  assert cycle(import_graph()) is None


def plant(tmp_path, files):
  for rel, text in files.items():
    path = tmp_path / PACKAGE / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
  return import_graph(tmp_path / PACKAGE)


@pytest.mark.parametrize("importer", ["from coseg_jax.proj.real_photos import views",
                                      "import coseg_jax.proj.real_photos.views",
                                      "def f():\n  from ..proj.real_photos import views"])
def test_a_planted_recipe_import_is_found(tmp_path, importer):
  graph = plant(tmp_path, {"__init__.py": "", "proj/__init__.py": "",
                           "proj/real_photos/__init__.py": "", "proj/real_photos/views.py": "",
                           "training/__init__.py": "", "training/trainer.py": importer})
  assert recipe_imports(graph) == [("coseg_jax.training.trainer",
                                    "coseg_jax.proj.real_photos.views")]


def test_planted_training_import_and_cycle_are_found(tmp_path):
  graph = plant(tmp_path, {"__init__.py": "", "config.py": "from coseg_jax.data import pipeline",
                           "data/__init__.py": "", "data/pipeline.py": "from coseg_jax import config",
                           "training/__init__.py": "", "training/trainer.py": "",
                           "evaluators/__init__.py": "",
                           "evaluators/groups.py": "from coseg_jax.training import trainer"})
  assert training_imports(graph) == [("coseg_jax.evaluators.groups", "coseg_jax.training.trainer")]
  assert cycle(graph) == ["coseg_jax.config", "coseg_jax.data.pipeline", "coseg_jax.config"]
