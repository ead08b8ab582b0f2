"""Driver-side R_clean: the cleaned records, their features before and after, and their block positions."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

__all__ = ["CleanedStore"]


class CleanedStore:
    """Records cleaned so far, in the order they were cleaned.

    NOTE: the features of R_clean stay in driver memory (8 bytes times twice
    the budget times the features), which bounds the budget by the driver's heap.
    """

    def __init__(self, schema: pa.Schema, n_features: int):
        self.rows = schema.empty_table()
        self.removed: list = []
        # Feature rows live in buffers that double when full, so adding a
        # batch costs O(batch) instead of copying all of R_clean again.
        self._arrays = {
            "X": np.empty((64, n_features)),
            "y": np.empty(64),
            "X_dirty": np.empty((64, n_features)),
            "y_dirty": np.empty(64),
        }
        self.classes = np.empty(0, dtype=object)
        self.size = 0
        self.positions: dict[int, np.ndarray] = {}

    @property
    def X(self) -> np.ndarray:
        return self._arrays["X"][: self.size]

    @property
    def y(self) -> np.ndarray:
        """Labels of R_clean; NaN for removed records, which have a zero gradient."""
        return self._arrays["y"][: self.size]

    @property
    def X_dirty(self) -> np.ndarray:
        return self._arrays["X_dirty"][: self.size]

    @property
    def y_dirty(self) -> np.ndarray:
        return self._arrays["y_dirty"][: self.size]

    def add(self, partitions, positions, X, y, X_dirty, y_dirty, classes, rows: pa.Table, removed: list) -> None:
        """Append cleaned records: block positions, cleaned and dirty features, error classes and rows."""
        end = self.size + y.size
        for name, values in (("X", X), ("y", y), ("X_dirty", X_dirty), ("y_dirty", y_dirty)):
            buffer = self._arrays[name]
            if end > buffer.shape[0]:
                capacity = max(end, 2 * buffer.shape[0])
                grown = np.empty((capacity, *buffer.shape[1:]))
                grown[: self.size] = buffer[: self.size]
                self._arrays[name] = buffer = grown
            buffer[self.size : end] = values
        self.size = end
        self.classes = np.concatenate([self.classes, np.asarray(classes, dtype=object)])
        for partition in np.unique(partitions):
            new = positions[partitions == partition]
            old = self.positions.get(int(partition), np.empty(0, dtype=np.int64))
            self.positions[int(partition)] = np.concatenate([old, new])
        if rows.num_rows:
            self.rows = pa.concat_tables([self.rows, rows])
        self.removed += removed
