"""Shared fixtures: the real data folder (skips cleanly when absent) and small models."""

import os
import pathlib

# The tests compile many small programs and run each a few times: LLVM's -O0 compiles them
# about 3x faster (XLA's own graph optimisations, fusion included, still run). A flag of
# the caller's, e.g. XLA_FLAGS=--xla_backend_optimization_level=2, takes precedence.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                             " --xla_backend_optimization_level=0").strip()

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position

jax.config.update("jax_default_matmul_precision", "float32")

REPO = pathlib.Path(__file__).resolve().parents[1]


def shared_data_dir():
  """``$COSEG_DATA_DIR`` or ``<repo>/../shared/data``; None when absent."""
  path = pathlib.Path(os.environ.get("COSEG_DATA_DIR", REPO.parent / "shared" / "data"))
  return path if path.is_dir() else None


@pytest.fixture(scope="session")
def data_dir():
  path = shared_data_dir()
  if path is None:
    pytest.skip("real test data not found: set COSEG_DATA_DIR or place it at ../shared/data")
  return path


@pytest.fixture(scope="session")
def vgg16_path(data_dir):
  path = data_dir / "vgg16_features_oxford.pth"
  if not path.is_file():
    pytest.skip(f"real VGG16 weights not found at {path}")
  pytest.importorskip("torch", reason="reading the .pth weights needs the [torch] extra")
  return path
