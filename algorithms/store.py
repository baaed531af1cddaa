"""Encoded rows of one channel, appended block by block, kept in memory up to a budget and on disk beyond it.

The reader (algorithms.data) appends each block of rows it encodes; training reads them back a block at a time
(base.Dataset.rows / blocks), so a channel larger than memory never has to be in memory at once. Rows are stored
as float64 ``[features..., label]``. Beyond ``spill_bytes`` every row goes to one unnamed temporary file (deleted
by the operating system when the job ends, even if it is killed), in ``TMPDIR`` or /tmp; reading a block is one
``preadv`` into a fresh array, so what training reads never stays mapped in the process.
"""

from __future__ import annotations

import bisect
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from typing import IO

import numpy as np

from algorithms.base import BLOCK_ROWS, Dataset
from core.errors import OutputError

ITEM = np.dtype(np.float64).itemsize


class SpillError(OutputError):
    """The temporary file could not be created or written (disk full, TMPDIR not writable)."""


class RowStore:
    """Append (X, y) blocks; ``dataset(name)`` then reads them back. One channel, one store."""

    def __init__(self, n_features: int, spill_bytes: int):
        self.n_features = n_features
        self.width = n_features + 1  # the label is the last column
        self.spill_bytes = spill_bytes
        self._blocks: list[np.ndarray] = []  # in memory, until spilled
        self._starts: list[int] = []
        self._file: IO[bytes] | None = None  # the temporary file once spilled
        self.rows = 0

    @property
    def spilled(self) -> bool:
        return self._file is not None

    def append(self, X: np.ndarray, y: np.ndarray) -> None:
        block = np.empty((len(y), self.width), dtype=np.float64)
        block[:, :-1], block[:, -1] = X, y
        if self._file is None and (self.rows + len(y)) * self.width * ITEM > self.spill_bytes:
            self._spill()
        if self._file is None:
            self._starts.append(self.rows)
            self._blocks.append(block)
        else:
            self._write(block, self.rows)
        self.rows += len(y)

    def _spill(self) -> None:
        try:
            self._file = tempfile.TemporaryFile(prefix="byoc-rows-")  # noqa: SIM115 (lives as long as the store)
        except OSError as e:
            raise SpillError(
                f"cannot create a temporary file for the rows in {tempfile.gettempdir()}: "
                f"{e.strerror} (set TMPDIR to a writable directory with room, or raise BYOC_ROWS_IN_MEMORY_MB)",
            ) from None
        for start, block in zip(self._starts, self._blocks, strict=True):
            self._write(block, start)
        self._blocks, self._starts = [], []

    def _write(self, block: np.ndarray, start: int) -> None:
        assert self._file is not None
        if not block.size:
            return
        data = np.ascontiguousarray(block).data.cast("B")
        offset = start * self.width * ITEM
        try:
            while data:
                written = os.pwrite(self._file.fileno(), data, offset)
                data, offset = data[written:], offset + written
        except OSError as e:
            raise SpillError(
                f"cannot write rows to a temporary file in {tempfile.gettempdir()}: "
                f"{e.strerror} (set TMPDIR to a directory with room, or raise BYOC_ROWS_IN_MEMORY_MB)",
            ) from None

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) as a (k, width) array (a view when they lie in one in-memory block)."""
        start, stop = max(0, min(start, self.rows)), max(0, min(stop, self.rows))
        stop = max(start, stop)
        if self._file is None:
            first = max(bisect.bisect_right(self._starts, start) - 1, 0)
            pieces = []
            for i in range(first, len(self._blocks)):
                b0 = self._starts[i]
                if b0 >= stop:
                    break
                block = self._blocks[i]
                pieces.append(block[max(start - b0, 0) : min(stop - b0, len(block))])
            if len(pieces) == 1:
                return pieces[0]
            return np.concatenate(pieces) if pieces else np.empty((0, self.width))
        out = np.empty((stop - start, self.width), dtype=np.float64)
        if not out.size:
            return out
        view, offset = out.data.cast("B"), start * self.width * ITEM
        while view:
            got = os.preadv(self._file.fileno(), [view], offset)
            if got <= 0:  # the file is ours and sized by what we wrote: a short read is a bug, not data
                raise OSError(f"temporary row file ended at byte {offset}")
            view, offset = view[got:], offset + got
        return out

    def segments(self, size: int) -> Iterator[np.ndarray]:
        """Every row in order, in pieces of at most ``size`` rows: views of the in-memory blocks (never a copy
        across two of them), or reads of the file."""
        if self._file is None:
            for block in self._blocks:
                for start in range(0, len(block), size):
                    yield block[start : start + size]
            return
        for start in range(0, self.rows, size):
            yield self.read(start, start + size)

    def rewrite_columns(self, fns: Mapping[int, Callable[[np.ndarray], np.ndarray]], block_rows: int) -> None:
        """Replace each column ``j`` of every row by ``fns[j](column)``, in one pass a block at a time."""
        if not fns:
            return
        start = 0
        for block in self.segments(block_rows):  # in memory: views, changed in place
            for j, fn in fns.items():
                block[:, j] = fn(block[:, j])
            if self._file is not None:
                self._write(block, start)
            start += len(block)

    def dataset(self, name: str) -> StoredDataset:
        return StoredDataset(name, self)


class StoredDataset(Dataset):
    """A channel read back from a RowStore; ``X`` and ``y`` materialise it (``y`` once, then kept)."""

    def __init__(self, name: str, store: RowStore):
        self.name = name
        self._store = store
        self._labels: np.ndarray | None = None

    def __len__(self) -> int:
        return self._store.rows

    @property
    def n_features(self) -> int:
        return self._store.n_features

    @property
    def spilled(self) -> bool:
        return self._store.spilled

    def rows(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        block = self._store.read(start, stop)
        return block[:, :-1], block[:, -1]

    def blocks(self, size: int = BLOCK_ROWS) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for block in self._store.segments(size):
            yield block[:, :-1], block[:, -1]

    @property
    def X(self) -> np.ndarray:
        out = np.empty((len(self), self.n_features))
        start = 0
        for X, _ in self.blocks(_MATERIALISE):
            out[start : start + len(X)] = X
            start += len(X)
        return out

    @property
    def y(self) -> np.ndarray:
        if self._labels is None:
            labels = np.empty(len(self))
            start = 0
            for _, y in self.blocks(_MATERIALISE):
                labels[start : start + len(y)] = y
                start += len(y)
            self._labels = labels
        return self._labels


_MATERIALISE = 1 << 16
