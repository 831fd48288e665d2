"""Shared fixtures: the real data folder (skips cleanly when absent) and small models."""

import os
import pathlib

import jax
import pytest

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
  return path
