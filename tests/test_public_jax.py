"""The package, its tests and its benchmarks use public JAX only, so a JAX release that
moves its internals does not break them: no import of JAX's private package, no private
helper of a jitted function (compiles are counted through jax.monitoring instead), no write
to JAX's rule tables (tests/test_import_state.py checks that importing writes nothing)."""

import re

from conftest import REPO

PRIVATE_PACKAGE = "jax." + "_" + "src"
PATTERNS = {
    "JAX's private package": re.compile(re.escape(PRIVATE_PACKAGE) + r"\b"),
    "a jitted function's private cache size": re.compile(r"\." + "_" + r"cache_size\("),
    "a write to a JAX rule table": re.compile(
        r"(primitive_jvps|primitive_transposes|primitive_batchers|fancy_primitive_batchers|"
        r"_lowerings|custom_partial_eval_rules)\[[^\]]*\]\s*="),
}


def offending_lines(paths):
  for path in paths:
    for number, line in enumerate(path.read_text().splitlines(), 1):
      for what, pattern in PATTERNS.items():
        if pattern.search(line):
          yield f"{path.relative_to(REPO)}:{number}: {what}: {line.strip()}"


def test_no_private_jax_in_package_tests_or_benchmarks():
  paths = [p for folder in ("coseg_jax", "tests", "bench") for p in sorted((REPO / folder).rglob("*.py"))]
  assert len(paths) > 50
  assert list(offending_lines(paths)) == []


def test_the_check_finds_each_kind(tmp_path, monkeypatch):
  monkeypatch.setattr("test_public_jax.REPO", tmp_path)
  planted = tmp_path / "planted.py"
  planted.write_text(f"from {PRIVATE_PACKAGE} import core\n"
                     "n = f." + "_" + "cache_size()\n"
                     "ad.primitive" "_jvps[p] = rule\n")
  found = list(offending_lines([planted]))
  assert [line.split(": ")[1] for line in found] == list(PATTERNS)
