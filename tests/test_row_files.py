"""The view cache's on-disk arrays: written by rows, read by rows, named when damaged."""

import numpy as np
import pytest

from coseg_jax.errors import BadValue
from coseg_jax.proj.real_photos.row_files import RowFile, RowWriter, Stacked


def written(path, array, chunk=3):
  writer = RowWriter(path, array.shape, array.dtype)
  for start in range(0, len(array), chunk):
    writer.write(array[start:start + chunk])
  writer.close()
  return RowFile(path)


def test_rows_read_back_as_numpy_reads_the_file(tmp_path):
  array = np.random.default_rng(0).normal(size=(10, 3, 2, 4)).astype(np.float16)
  f = written(tmp_path / "a.npy", array)
  np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), array)  # a plain .npy file
  assert f.shape == array.shape and f.dtype == array.dtype and len(f) == 10
  for index in (4, -1, [7, 0, 7], np.array([[1, 2], [9, 3]]), slice(2, 8, 3), []):
    np.testing.assert_array_equal(f[index], array[index])
  np.testing.assert_array_equal(np.asarray(f), array)


def test_files_numpy_wrote_are_read_too(tmp_path):
  array = np.arange(24, dtype=np.uint8).reshape(6, 4)
  np.save(tmp_path / "b.npy", array)  # numpy's version 1.0 header
  np.testing.assert_array_equal(RowFile(tmp_path / "b.npy")[[5, 1]], array[[5, 1]])


def test_damaged_files_and_bad_rows_are_named(tmp_path):
  array = np.ones((4, 8), np.float32)
  written(tmp_path / "a.npy", array)
  data = (tmp_path / "a.npy").read_bytes()
  (tmp_path / "short.npy").write_bytes(data[:-5])
  with pytest.raises(BadValue, match="short.npy.*truncated"):
    RowFile(tmp_path / "short.npy")
  (tmp_path / "text.npy").write_text("not an array")
  with pytest.raises(BadValue, match="text.npy: not a .npy file"):
    RowFile(tmp_path / "text.npy")
  with pytest.raises(IndexError, match="a.npy"):
    RowFile(tmp_path / "a.npy")[[0, 4]]
  writer = RowWriter(tmp_path / "c.npy", (4, 8), np.float32)
  with pytest.raises(BadValue, match=r"c.npy: rows of shape \(2, 7\)"):
    writer.write(np.ones((2, 7)))
  writer.write(array[:3])
  with pytest.raises(BadValue, match="c.npy: 3 rows written of 4"):
    writer.close()


def test_stacked_reads_rows_across_its_parts_in_order(tmp_path):
  first = np.arange(30, dtype=np.float16).reshape(5, 3, 2)
  second = -np.arange(12, dtype=np.float16).reshape(2, 3, 2)
  stacked = Stacked(written(tmp_path / "a.npy", first), second)
  whole = np.concatenate([first, second])
  assert stacked.shape == whole.shape and len(stacked) == 7
  for index in ([6, 0, 5, 4], 5, -1, slice(3, 7), np.array([[6], [1]])):
    np.testing.assert_array_equal(stacked[index], whole[index])
  with pytest.raises(IndexError):
    stacked[[7]]
  with pytest.raises(BadValue, match="same row shape"):
    Stacked(first, second[:, :2])
