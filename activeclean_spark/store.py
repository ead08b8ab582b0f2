"""Driver-side R_clean: the cleaned records, their features before and after, and their block positions."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from scipy import sparse as sparse_arrays

from .matrices import from_named_arrays, is_sparse, named_arrays, stack

__all__ = ["CleanedStore"]


class _SparseRows:
    """CSR rows appended batch by batch, stacked into one CSR array on first read after a change."""

    def __init__(self, width: int):
        self.parts = [sparse_arrays.csr_array((0, width))]

    def append(self, rows) -> None:
        self.parts.append(sparse_arrays.csr_array(rows))

    def stacked(self):
        if len(self.parts) > 1:
            self.parts = [stack(self.parts)]
        return self.parts[0]


class CleanedStore:
    """Records cleaned so far, in the order they were cleaned.

    NOTE: the features of R_clean stay in driver memory (8 bytes times twice
    the budget times the features, or 12 bytes per non-zero entry when they
    are sparse), which bounds the budget by the driver's heap.
    """

    def __init__(self, schema: pa.Schema, n_features: int, *, sparse: bool = False):
        self.rows = schema.empty_table()
        self.removed: list = []
        # Feature rows live in buffers that double when full, so adding a
        # batch costs O(batch) instead of copying all of R_clean again.
        # Sparse features are kept as CSR batches instead.
        features = (lambda: _SparseRows(n_features)) if sparse else (lambda: np.empty((64, n_features)))
        self._arrays = {
            "X": features(),
            "y": np.empty(64),
            "X_dirty": features(),
            "y_dirty": np.empty(64),
            # Per record: the iteration that cleaned it and its Horvitz-Thompson
            # factor draws / (b * p) in that iteration's batch (0 for audits).
            "iteration": np.empty(64),
            "inverse_probability": np.empty(64),
        }
        self.classes = np.empty(0, dtype=object)
        self.size = 0
        self.positions: dict[int, np.ndarray] = {}

    def _features(self, name: str):
        buffer = self._arrays[name]
        return buffer.stacked() if isinstance(buffer, _SparseRows) else buffer[: self.size]

    @property
    def X(self):
        return self._features("X")

    @property
    def y(self) -> np.ndarray:
        """Labels of R_clean; NaN for removed records, which have a zero gradient."""
        return self._arrays["y"][: self.size]

    @property
    def iteration(self) -> np.ndarray:
        return self._arrays["iteration"][: self.size]

    @property
    def inverse_probability(self) -> np.ndarray:
        return self._arrays["inverse_probability"][: self.size]

    @property
    def X_dirty(self):
        return self._features("X_dirty")

    @property
    def y_dirty(self) -> np.ndarray:
        return self._arrays["y_dirty"][: self.size]

    def add(self, partitions, positions, X, y, X_dirty, y_dirty, classes, rows: pa.Table, removed: list, *,
            iteration: int = 0, inverse_probability=None) -> None:
        """Append cleaned records: block positions, cleaned and dirty features, error classes and rows."""
        end = self.size + y.size
        factors = 0.0 if inverse_probability is None else inverse_probability
        columns = (("X", X), ("y", y), ("X_dirty", X_dirty), ("y_dirty", y_dirty), ("iteration", iteration),
                   ("inverse_probability", factors))
        for name, values in columns:
            buffer = self._arrays[name]
            if isinstance(buffer, _SparseRows):
                buffer.append(values)
                continue
            if is_sparse(values):
                values = values.toarray()
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

    # Per-record columns besides the features, as saved by :meth:`state`.
    _VECTORS = ("y", "y_dirty", "iteration", "inverse_probability")

    def state(self) -> dict:
        """Return the store as numpy arrays and Arrow tables, for a checkpoint; :meth:`restore` reads it back.

        Keys: ``arrays`` (named numpy arrays), ``classes`` (list of str),
        ``rows`` (the cleaned rows) and ``removed`` (the removed keys).
        """
        arrays = {}
        for name in ("X", "X_dirty"):
            arrays.update(named_arrays(name, self._features(name)))
        for name in self._VECTORS:
            arrays[name] = self._arrays[name][: self.size]
        for partition, positions in self.positions.items():
            arrays[f"positions.{partition}"] = positions
        return {"arrays": arrays, "classes": [str(c) for c in self.classes], "rows": self.rows,
                "removed": list(self.removed)}

    @classmethod
    def restore(cls, state: dict, schema: pa.Schema, n_features: int, *, sparse: bool = False) -> "CleanedStore":
        """Return the store that :meth:`state` described."""
        store = cls(schema, n_features, sparse=sparse)
        arrays = state["arrays"]
        size = arrays["y"].size
        if size:
            store.add(np.zeros(0), np.zeros(0, dtype=np.int64), from_named_arrays("X", arrays), arrays["y"],
                      from_named_arrays("X_dirty", arrays), arrays["y_dirty"], state["classes"], state["rows"],
                      list(state["removed"]), iteration=arrays["iteration"],
                      inverse_probability=arrays["inverse_probability"])
        prefix = "positions."
        store.positions = {int(name[len(prefix):]): np.asarray(values, dtype=np.int64)
                           for name, values in arrays.items() if name.startswith(prefix)}
        return store

    def sample_weights(self, iterations: int) -> np.ndarray:
        """Weights under which R_clean estimates the clean loss over all records, after ``iterations`` batches.

        Batch s gives the unbiased estimate ``sum over R_clean(s) + (1/b) sum
        over its draws of loss / p`` of the total clean loss.  Averaging these
        over s = 1..T leaves each record cleaned in batch s with weight
        ``draws / (b p) + (T - s)``: once as a draw, then once for every later
        batch that finds it in R_clean.  The records the detector or a rule
        trusts are not on the driver and take no part.
        """
        return self.inverse_probability + (iterations - self.iteration)
