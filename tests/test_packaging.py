"""Packaging: the console scripts resolve, and a run records the versions it ran with."""

import importlib.metadata
import json
import subprocess
import sys
import tomllib

import jax
import pytest

from coseg_jax.training import trainer as train_lib
from tiny import REPO, tiny_config


@pytest.mark.slow
def test_console_scripts_run():
  """Each script's entry point, called as the installed command would, prints its usage."""
  project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
  assert sorted(project["scripts"]) == ["coseg-eval", "coseg-segment", "coseg-train"]
  for script, target in project["scripts"].items():
    module, function = target.split(":")
    code = f"import sys; sys.argv = [{script!r}, '--help']; from {module} import {function}; {function}()"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=REPO, check=False)
    # every command prints "usage: NAME [flags]", its doc and its flags
    assert "usage:" in result.stdout.lower(), (script, result.stderr[-2000:])


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(p.name for p in (REPO / "bench").glob("*.py")
                                          if p.name not in ("__init__.py", "common.py")))
def test_bench_scripts_run_as_documented(script, tmp_path):
  """``python -m bench.NAME --help`` from the repository root, as docs/performance.md runs
  them (no ``sys.path`` edit in the scripts)."""
  del tmp_path
  assert "sys.path" not in (REPO / "bench" / script).read_text()
  result = subprocess.run([sys.executable, "-m", f"bench.{script.removesuffix('.py')}", "--help"],
                          capture_output=True, text=True, cwd=REPO, check=False)
  assert result.returncode == 0 and "usage:" in result.stdout, result.stderr[-2000:]


def test_config_json_records_package_versions(tmp_path):
  train_lib.write_run_info(str(tmp_path), tiny_config())
  versions = json.loads((tmp_path / "config.json").read_text())["versions"]
  assert versions["jax"] == jax.__version__
  for name in ("flax", "optax", "orbax-checkpoint", "grain"):
    assert versions[name] == importlib.metadata.version(name)
