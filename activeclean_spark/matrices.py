"""Operations shared by dense feature matrices (numpy) and sparse ones (scipy CSR arrays).

The featurizer returns a CSR array when the hashed, text and one-hot
columns can give many features (:attr:`FeatureSpec.sparse`).  The matrix products the engine needs
(``X @ theta``, ``X.T @ v``, row selection) work on both kinds as they are.
The functions here cover the rest, so that no code path turns a sparse
block into an ``(n, d)`` dense array.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

__all__ = ["is_sparse", "row_squares", "squared", "rows_differ", "stack", "take_or_zero", "zero_rows", "column_sums",
           "named_arrays", "from_named_arrays"]

# The arrays that hold a CSR matrix, in the order scipy takes them.
CSR_PARTS = ("data", "indices", "indptr", "shape")


def is_sparse(X) -> bool:
    return sparse.issparse(X)


def squared(X):
    """Return the element-wise square, of the same kind as ``X``."""
    return X.multiply(X) if is_sparse(X) else X * X


def row_squares(X) -> np.ndarray:
    """Return the squared Euclidean norm of every row, shape ``(n,)``."""
    if is_sparse(X):
        return np.asarray(X.multiply(X).sum(axis=1), dtype=np.float64).ravel()
    return np.einsum("ij,ij->i", X, X)


def column_sums(X) -> np.ndarray:
    """Return the sum of every column as a 1-D numpy array."""
    return np.asarray(X.sum(axis=0), dtype=np.float64).ravel()


def rows_differ(A, B) -> np.ndarray:
    """Return True for the rows where ``A`` and ``B`` differ in any entry."""
    if is_sparse(A) or is_sparse(B):
        different = sparse.csr_array(A) != sparse.csr_array(B)
        return np.asarray(different.sum(axis=1)).ravel() > 0
    return np.any(A != B, axis=1)


def zero_rows(n: int, width: int, like):
    """Return an ``(n, width)`` matrix of zeros, sparse when ``like`` is."""
    return sparse.csr_array((n, width)) if is_sparse(like) else np.zeros((n, width))


def stack(parts: list):
    """Stack matrices of the same kind on top of each other."""
    if parts and is_sparse(parts[0]):
        return sparse.vstack(parts, format="csr")
    return np.vstack(parts)


def take_or_zero(X, rows: np.ndarray):
    """Return the rows of ``X`` at ``rows``, with a row of zeros where ``rows`` is -1."""
    rows = np.asarray(rows, dtype=np.int64)
    padded = stack([X, zero_rows(1, X.shape[1], X)])
    return padded[np.where(rows < 0, X.shape[0], rows)]


def named_arrays(name: str, X) -> dict:
    """Return the numpy arrays that hold ``X`` for saving: ``{name: X}``, or ``name.data`` and the other CSR parts."""
    if not is_sparse(X):
        return {name: np.asarray(X)}
    parts = {"data": X.data, "indices": X.indices, "indptr": X.indptr, "shape": np.array(X.shape, dtype=np.int64)}
    return {f"{name}.{part}": parts[part] for part in CSR_PARTS}


def from_named_arrays(name: str, arrays) -> object:
    """Return the matrix that :func:`named_arrays` saved under ``name``."""
    if name in arrays:
        return arrays[name]
    data, indices, indptr, shape = (arrays[f"{name}.{part}"] for part in CSR_PARTS)
    return sparse.csr_array((data, indices, indptr), shape=tuple(int(n) for n in shape))
