"""Arrays kept on disk and read a row at a time: the view cache's features and labels.

The encoded views of the ten classes are 3 GB at 256 px and 12 GB at 512 px (float16
pool5, pool4 and pool3), so they are written to ``.npy`` files as they are encoded
(``RowWriter``) and read back by rows (``RowFile``: ``os.pread`` of the rows a batch needs),
never held in memory at once. Reads go through the page cache, which the OS reclaims;
unlike ``np.load(mmap_mode="r")`` they do not grow the process's resident set with every
row ever touched. (numpy's ``.npy`` format is the file format; only the row access is
written here, as numpy offers whole-file reads or memory maps.)
"""

import os

import numpy as np

from coseg_jax.errors import BadValue


class RowWriter:
  """Writes an ``.npy`` file of ``shape`` rows by rows (``write``), in order."""

  def __init__(self, path, shape, dtype):
    self.path, self.shape, self.dtype = path, tuple(shape), np.dtype(dtype)
    self.rows = 0
    self.file = open(path, "wb")  # pylint: disable=consider-using-with
    np.lib.format.write_array_header_2_0(self.file, {
        "descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
        "shape": self.shape})

  def write(self, rows):
    rows = np.ascontiguousarray(rows, self.dtype)
    if rows.shape[1:] != self.shape[1:] or self.rows + len(rows) > self.shape[0]:
      raise BadValue(f"{self.path}: rows of shape {rows.shape} do not fit {self.shape} "
                     f"after {self.rows} rows")
    self.file.write(rows.tobytes())
    self.rows += len(rows)

  def close(self):
    self.file.close()
    if self.rows != self.shape[0]:
      raise BadValue(f"{self.path}: {self.rows} rows written of {self.shape[0]}")


class _Rows:
  """Read by rows: ``x[i]``, ``x[[i, j, ...]]``, ``x[a:b]``. Subclasses set ``shape`` and
  ``dtype`` and read the rows of a flat array of in-range indices (``_read``)."""

  def __len__(self):
    return self.shape[0]

  def __getitem__(self, index):
    if isinstance(index, slice):
      index = np.arange(len(self))[index]
    index = np.asarray(index)
    if not index.size:
      index = index.astype(np.intp)
    if not np.issubdtype(index.dtype, np.integer):
      raise TypeError(f"rows of {self} are read by integer indices or a slice")
    flat = np.where(index < 0, index + len(self), index).ravel()
    if flat.size and (flat.min() < 0 or flat.max() >= len(self)):
      raise IndexError(f"row index out of range for {self} with {len(self)} rows")
    return self._read(flat).reshape(index.shape + self.shape[1:])

  def __array__(self, dtype=None, copy=None):
    """All rows in memory (for small files and tests)."""
    del copy
    out = self[:]
    return out if dtype is None else out.astype(dtype)


class RowFile(_Rows):
  """An ``.npy`` file (C order) read by rows: ``f[i]``, ``f[[i, j, ...]]``, ``f[a:b]``."""

  def __init__(self, path):
    self.path, self.fd = str(path), None
    with open(self.path, "rb") as f:
      try:
        version = np.lib.format.read_magic(f)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, fortran_order, dtype = read_header(f)
      except ValueError as e:
        raise BadValue(f"{self.path}: not a .npy file ({e})") from e
      self.offset = f.tell()
    if fortran_order or not shape or dtype.hasobject:
      raise BadValue(f"{self.path}: not an array of rows (shape {shape})")
    self.shape, self.dtype = tuple(shape), dtype
    self.row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
    expected = self.offset + self.shape[0] * self.row_bytes
    if os.path.getsize(self.path) != expected:
      raise BadValue(f"{self.path}: {os.path.getsize(self.path)} bytes, expected {expected} "
                     f"for {self.shape} {self.dtype} (truncated?)")
    self.fd = os.open(self.path, os.O_RDONLY)

  def __str__(self):
    return self.path

  def _read(self, flat):
    out = np.empty((flat.size,) + self.shape[1:], self.dtype)
    buffer = out.reshape(flat.size, self.row_bytes // self.dtype.itemsize).view(np.uint8)
    for k, row in enumerate(flat):
      if os.preadv(self.fd, [buffer[k]], self.offset + int(row) * self.row_bytes) \
          != self.row_bytes:
        raise BadValue(f"{self.path}: row {row} could not be read (truncated?)")
    return out

  def close(self):
    if self.fd is not None:
      os.close(self.fd)
      self.fd = None

  def __del__(self):
    self.close()


class Stacked(_Rows):
  """Row arrays (``RowFile`` or numpy) one after the other, read by rows like one array
  without being copied into one."""

  def __init__(self, *parts):
    if len({p.shape[1:] for p in parts}) != 1 or len({np.dtype(p.dtype) for p in parts}) != 1:
      raise BadValue("stacked arrays need the same row shape and dtype: "
                     + ", ".join(f"{p.shape} {p.dtype}" for p in parts))
    self.parts = parts
    self.starts = np.cumsum([0] + [len(p) for p in parts])
    self.shape = (int(self.starts[-1]),) + tuple(parts[0].shape[1:])
    self.dtype = np.dtype(parts[0].dtype)

  def __str__(self):
    return f"{len(self.parts)} stacked arrays"

  def _read(self, flat):
    part = np.searchsorted(self.starts, flat, side="right") - 1
    out = np.empty((flat.size,) + self.shape[1:], self.dtype)
    for p in np.unique(part):
      chosen = part == p
      out[chosen] = self.parts[p][flat[chosen] - self.starts[p]]
    return out
