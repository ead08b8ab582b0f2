"""Declarative featurization of Arrow record batches into numpy blocks.

A :class:`FeatureSpec` names the columns; :meth:`FeatureSpec.fit` computes the
statistics on the dirty relation (means, standard deviations, category
vocabularies, label classes) and returns a frozen :class:`Featurizer`.  The
same frozen featurizer maps a dirty record and its cleaned version into one
feature space, so gradients before and after cleaning are comparable.

Rules, applied the same way at fit time and at transform time:

* Numeric columns are standardized with the dirty mean and standard
  deviation.  A value that is null, NaN or a string that does not parse as a
  number is missing: it becomes 0 (the mean after standardization) and a
  ``<column>__missing`` indicator is 1.  By default the indicator exists only
  for the columns with a missing value in the dirty data.
* Categorical columns are one-hot encoded over the ``max_categories`` most
  frequent dirty values.  Any other value goes to ``<column>=__other__`` and a
  null goes to ``<column>=__missing__``.
* Hashed columns map each value to one of ``hash_buckets`` indicator
  columns by a stable hash of its text (BLAKE2b).  A value that first
  appears after cleaning still gets its own column in the frozen feature
  space, unless its hash collides with another value's.  A null goes to ``<column>#__missing__``.
* Text columns are lower-cased and split into words (runs of letters,
  digits and underscores).  Each word adds 1 to one of ``text_buckets``
  columns chosen by the same hash, so a feature counts the words of its
  bucket (the hashing trick of Spark's HashingTF).  A null goes to
  ``<column>~__missing__``.
* Classification labels map to {0, 1}: the ``positive`` value is 1, the
  other class 0; when more than one other value occurs in the dirty data,
  every non-null value but ``positive`` is 0 (one-vs-rest).  Regression labels are parsed as numbers.  A label that is
  missing or not one of the classes makes the record unusable for training
  (``y`` is NaN) until a cleaner fixes it.

With many hashed, text or one-hot features, ``X`` is a scipy CSR array
(see ``FeatureSpec.sparse``), whose memory grows with the non-zero entries
instead of with the number of features.
"""

from __future__ import annotations

import logging

import functools
import hashlib
import json
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy import sparse as sparse_arrays

__all__ = ["FeatureSpec", "Featurizer", "FunctionFeaturizer", "value_text"]

logger = logging.getLogger(__name__)

# A number as Spark and most CSV writers print it, with optional exponent.
_NUMBER_PATTERN = r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$"

# Separator of the words in a text column: any run of characters other than letters, digits and underscores.
_WORD_SEPARATOR = r"[^\p{L}\p{N}_]+"

# With sparse="auto", the features are a CSR array once the hashed, text and
# one-hot columns can give more than this many features.  Such columns put
# one or a few non-zero entries in a row, so a dense row would be mostly zeros.
SPARSE_FEATURES = 4096


def value_text(value) -> str | None:
    """Return the text form used to compare category and label values.

    It matches pyarrow's cast to string, so ``True`` compares equal to the
    Arrow value ``"true"`` and ``1.0`` to ``"1"``.
    """
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _numeric_values(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Parse a column as float64, with NaN for every missing or unparsable value."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    kind = column.type
    if pa.types.is_boolean(kind):
        column = pc.cast(column, pa.int8())
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        trimmed = pc.utf8_trim_whitespace(column)
        parsable = pc.match_substring_regex(trimmed, _NUMBER_PATTERN)
        column = pc.if_else(parsable, trimmed, pa.scalar(None, kind))
    elif pa.types.is_null(kind):
        return np.full(len(column), np.nan)
    elif not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)):
        raise TypeError(f"has type {kind}, which cannot be read as a number")
    values = pc.cast(column, pa.float64(), safe=False)
    return values.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)


def _text_values(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_null(column.type):
        return pa.nulls(len(column), pa.string())
    return pc.cast(column, pa.string())


@dataclass
class FeatureSpec:
    """Columns to featurize, before fitting.

    Parameters
    ----------
    label : str
        Label column.
    numeric : list of str, default=[]
        Numeric feature columns.
    categorical : list of str, default=[]
        Categorical feature columns.
    task : {"classification", "regression"}, default="classification"
        How the label is read.
    positive : scalar, optional
        Label value of the positive class.  When omitted, the dirty data must
        hold exactly two label values and the larger one (in text order) is
        positive.
    max_categories : int, default=100
        Largest vocabulary per categorical column.
    hashed : list of str, default=[]
        Categorical columns encoded by feature hashing instead of a fitted
        vocabulary; use it where cleaning brings values the dirty data lacks.
    hash_buckets : int, default=1024
        Indicator columns per hashed column.
    text : list of str, default=[]
        Free-text columns, encoded as hashed word counts.
    text_buckets : int, default=262144
        Hash buckets (features) per text column, 2^18 as in Spark's HashingTF.
    missing_indicators : {"auto", True, False}, default="auto"
        Which numeric columns get a ``__missing`` indicator feature: those
        with a missing value in the dirty data (``"auto"``), all, or none.
        A missing value that cleaning leaves in a column without an
        indicator is still featurized as 0.
    sparse : {"auto", True, False}, default="auto"
        Return the features as a scipy CSR array instead of a dense numpy
        array.  ``"auto"`` chooses sparse when the categorical, hashed and
        text columns can give more than ``SPARSE_FEATURES`` (4096) features.
    """

    label: str
    numeric: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)
    task: str = "classification"
    positive: object = None
    max_categories: int = 100
    hashed: list[str] = field(default_factory=list)
    hash_buckets: int = 1024
    missing_indicators: object = "auto"
    text: list[str] = field(default_factory=list)
    text_buckets: int = 1 << 18
    sparse: object = "auto"

    def __post_init__(self):
        if self.task not in ("classification", "regression"):
            raise ValueError(f"task must be 'classification' or 'regression', got {self.task!r}")
        if not isinstance(self.label, str) or not self.label:
            raise ValueError(f"label must name a column, got {self.label!r}")
        if not self.numeric and not self.categorical and not self.hashed and not self.text:
            raise ValueError("name at least one feature column in numeric, categorical, hashed or text")
        listed = [*self.numeric, *self.categorical, *self.hashed, *self.text]
        repeated = sorted({c for c in listed if listed.count(c) > 1})
        if repeated:
            raise ValueError(
                f"columns {repeated} are listed more than once among numeric, categorical, hashed and text"
            )
        if self.label in listed:
            raise ValueError(f"label column {self.label!r} is also listed as a feature")
        if not isinstance(self.max_categories, int) or self.max_categories < 1:
            raise ValueError(f"max_categories must be a positive integer, got {self.max_categories!r}")
        if not isinstance(self.hash_buckets, int) or self.hash_buckets < 1:
            raise ValueError(f"hash_buckets must be a positive integer, got {self.hash_buckets!r}")
        if isinstance(self.text_buckets, bool) or not isinstance(self.text_buckets, int) or self.text_buckets < 1:
            raise ValueError(f"text_buckets must be a positive integer, got {self.text_buckets!r}")
        for option in ("missing_indicators", "sparse"):
            value = getattr(self, option)
            if not (isinstance(value, bool) or value == "auto"):
                raise ValueError(f"{option} must be 'auto', true or false, got {value!r}")

    @property
    def is_sparse(self) -> bool:
        """Whether the fitted featurizer returns a CSR array (``sparse`` with "auto" resolved)."""
        if self.sparse != "auto":
            return self.sparse
        one_hot = (len(self.categorical) * (self.max_categories + 2) + len(self.hashed) * (self.hash_buckets + 1)
                   + len(self.text) * (self.text_buckets + 1))
        return one_hot > SPARSE_FEATURES

    @property
    def columns(self) -> list[str]:
        return [*self.numeric, *self.categorical, *self.hashed, *self.text, self.label]

    def partial_statistics(self, table: pa.Table) -> dict:
        """Compute mergeable statistics of one partition's Arrow table."""
        stats = {"numeric": {}, "categorical": {}, "label": {}}
        for name in self.numeric:
            values = _checked_numeric(table, name)
            present = values[~np.isnan(values)]
            stats["numeric"][name] = (present.size, float(present.sum()), float((present**2).sum()), values.size)
        for name in self.categorical:
            stats["categorical"][name] = _value_counts(_text_values(table.column(name)))
        if self.task == "classification":
            stats["label"] = _value_counts(_text_values(table.column(self.label)))
        return stats

    def fit_from_statistics(self, partials: list[dict]) -> "Featurizer":
        """Merge per-partition statistics into a frozen featurizer."""
        numeric = []
        for name in self.numeric:
            count = sum(p["numeric"][name][0] for p in partials)
            total = sum(p["numeric"][name][1] for p in partials)
            total_sq = sum(p["numeric"][name][2] for p in partials)
            mean = total / count if count else 0.0
            variance = max(total_sq / count - mean * mean, 0.0) if count else 0.0
            std = float(np.sqrt(variance))
            missing = sum(p["numeric"][name][3] for p in partials) > count
            if count == 0:
                logger.warning(
                    "numeric column %r has no value that reads as a number in the dirty data, so its scaling is "
                    "not fitted (mean 0, std 1) and cleaned values enter the model unscaled; parse the column "
                    "before the run or leave it out of the features", name)
            indicator = missing if self.missing_indicators == "auto" else bool(self.missing_indicators)
            numeric.append({"name": name, "mean": mean, "std": std if std > 0 else 1.0, "indicator": indicator})
        categorical = []
        for name in self.categorical:
            counts = _merge_counts(p["categorical"][name] for p in partials)
            ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
            categorical.append({"name": name, "vocabulary": [v for v, _ in ranked[: self.max_categories]]})
        label = {"name": self.label, "task": self.task}
        if self.task == "classification":
            label["classes"] = self._label_classes(_merge_counts(p["label"] for p in partials))
        hashed = [{"name": name, "buckets": self.hash_buckets} for name in self.hashed]
        text = [{"name": name, "buckets": self.text_buckets} for name in self.text]
        return Featurizer(numeric=numeric, categorical=categorical, label=label, hashed=hashed, text=text,
                          sparse=self.is_sparse)

    def _label_classes(self, counts: dict) -> list[str]:
        seen = sorted(counts)
        if self.positive is not None:
            positive = value_text(self.positive)
            if positive not in counts:
                raise ValueError(
                    f"positive label {self.positive!r} does not occur in label column {self.label!r}; "
                    f"values seen: {seen[:10]}"
                )
            others = [v for v in seen if v != positive]
            # One-vs-rest: every other non-null value is the negative class.
            negative = others[0] if len(others) == 1 else None
            return [negative, positive]
        if len(seen) != 2:
            raise ValueError(
                f"label column {self.label!r} has {len(seen)} distinct values {seen[:10]}, "
                "but binary classification needs 2; set positive to the value of the positive class"
            )
        return seen


def _checked_numeric(table: pa.Table, name: str) -> np.ndarray:
    try:
        return _numeric_values(table.column(name))
    except TypeError as error:
        raise TypeError(f"numeric column {name!r} {error}; list it under categorical instead") from None


def _hash_buckets(text: pa.Array, buckets: int) -> np.ndarray:
    """Return each value's bucket in [0, buckets), and ``buckets`` for nulls.

    Only the distinct values of the batch are hashed in Python; rows map to
    them through the dictionary indices.
    """
    encoded = pc.dictionary_encode(text)
    digests = [
        int.from_bytes(hashlib.blake2b(value.encode("utf-8"), digest_size=8).digest(), "little") % buckets
        for value in encoded.dictionary.to_pylist()
    ]
    table = np.array(digests + [buckets], dtype=np.int64)
    indices = pc.fill_null(encoded.indices, len(digests)).to_numpy(zero_copy_only=False)
    return table[indices]


def _words(text: pa.Array) -> tuple[np.ndarray, pa.Array]:
    """Split every value into lower-case words; return each word's row and the words."""
    lists = pc.split_pattern_regex(pc.utf8_lower(text), _WORD_SEPARATOR)
    words = pc.list_flatten(lists)
    rows = pc.list_parent_indices(lists).to_numpy(zero_copy_only=False)
    nonempty = pc.not_equal(words, "")
    return rows[nonempty.to_numpy(zero_copy_only=False)], words.filter(nonempty)


class _Entries:
    """Feature entries of a table, collected into a dense array or a CSR array."""

    def __init__(self, n: int, width: int, sparse: bool):
        self.n, self.width, self.sparse = n, width, sparse
        self.parts: list = []
        self.dense = None if sparse else np.zeros((n, width))

    def column(self, j: int, values: np.ndarray) -> None:
        """Set feature j of every row."""
        if self.sparse:
            rows = np.flatnonzero(values)
            self.parts.append((rows, np.full(rows.size, j), values[rows]))
        else:
            self.dense[:, j] = values

    def ones(self, rows: np.ndarray, columns: np.ndarray, *, counts: bool = False) -> None:
        """Set 1 at each (row, column); with ``counts``, a pair that repeats adds up."""
        if self.sparse:
            self.parts.append((rows, columns, np.ones(rows.size)))
        elif counts:
            np.add.at(self.dense, (rows, columns), 1.0)
        else:
            self.dense[rows, columns] = 1.0

    def matrix(self):
        if not self.sparse:
            return self.dense
        rows, columns, values = (np.concatenate(p) for p in zip(*self.parts)) if self.parts else ([], [], [])
        # 32-bit indices while they fit halve the memory of the indices.
        index = np.int32 if max(self.n, self.width, len(values)) < 2**31 else np.int64
        coords = (np.asarray(rows, dtype=index), np.asarray(columns, dtype=index))
        # The COO to CSR conversion sorts the entries and sums repeated ones.
        return sparse_arrays.coo_array((np.asarray(values, dtype=np.float64), coords), shape=(self.n, self.width)).tocsr()


def _matches(text: pa.Array, value: str) -> np.ndarray:
    return pc.fill_null(pc.equal(text, value), False).to_numpy(zero_copy_only=False)


def _value_counts(values: pa.Array) -> dict:
    counts = pc.value_counts(values.drop_null())
    return dict(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist()))


def _merge_counts(parts) -> dict:
    merged: dict = {}
    for part in parts:
        for value, count in part.items():
            merged[value] = merged.get(value, 0) + count
    return merged


class Featurizer:
    """Frozen map from Arrow tables to a feature matrix and label vector."""

    def __init__(self, numeric: list[dict], categorical: list[dict], label: dict, hashed: list[dict] | None = None,
                 text: list[dict] | None = None, sparse: bool = False):
        self.numeric = numeric
        self.categorical = categorical
        self.hashed = hashed or []
        self.text = text or []
        self.label = label
        self.sparse = bool(sparse)
        self._lookups = {c["name"]: pa.array(c["vocabulary"], pa.string()) for c in categorical}

    @functools.cached_property
    def feature_names(self) -> list[str]:
        """One name per feature; built on first use, since text columns give 2^18 names each."""
        names = []
        for column in self.numeric:
            names.append(column["name"])
            if column.get("indicator", True):
                names.append(column["name"] + "__missing")
        for column in self.categorical:
            names += [f"{column['name']}={v}" for v in column["vocabulary"]]
            names += [column["name"] + "=__other__", column["name"] + "=__missing__"]
        for column in self.hashed:
            names += [f"{column['name']}#{j}" for j in range(column["buckets"])]
            names.append(column["name"] + "#__missing__")
        for column in self.text:
            names += [f"{column['name']}~{j}" for j in range(column["buckets"])]
            names.append(column["name"] + "~__missing__")
        return names

    @property
    def n_features(self) -> int:
        return (sum(1 + c.get("indicator", True) for c in self.numeric)
                + sum(len(c["vocabulary"]) + 2 for c in self.categorical)
                + sum(c["buckets"] + 1 for c in (*self.hashed, *self.text)))

    @property
    def columns(self) -> list[str]:
        features = [c["name"] for c in (*self.numeric, *self.categorical, *self.hashed, *self.text)]
        return features + [self.label["name"]]

    def transform(self, table: pa.Table):
        """Return ``(X, y)`` for an Arrow table.

        ``X`` has shape ``(n, d)``: a float64 numpy array, or a scipy CSR
        array when the featurizer is sparse.  ``y`` is float64 with NaN where
        the label is unusable.
        """
        n = table.num_rows
        every_row = np.arange(n)
        entries = _Entries(n, self.n_features, self.sparse)
        offset = 0
        for column in self.numeric:
            values = _checked_numeric(table, column["name"])
            missing = np.isnan(values)
            entries.column(offset, np.where(missing, 0.0, (values - column["mean"]) / column["std"]))
            if column.get("indicator", True):  # models saved before the option have every indicator
                offset += 1
                entries.column(offset, missing.astype(np.float64))
            offset += 1
        for column in self.categorical:
            size = len(column["vocabulary"])
            text = _text_values(table.column(column["name"]))
            positions = pc.index_in(text, value_set=self._lookups[column["name"]])
            positions = pc.fill_null(positions, size).to_numpy(zero_copy_only=False)
            positions = np.where(text.is_null().to_numpy(zero_copy_only=False), size + 1, positions)
            entries.ones(every_row, offset + positions)
            offset += size + 2
        for column in self.hashed:
            buckets = column["buckets"]
            entries.ones(every_row, offset + _hash_buckets(_text_values(table.column(column["name"])), buckets))
            offset += buckets + 1
        for column in self.text:
            buckets = column["buckets"]
            text = _text_values(table.column(column["name"]))
            rows, words = _words(text)
            entries.ones(rows, offset + _hash_buckets(words, buckets), counts=True)
            missing = np.flatnonzero(text.is_null().to_numpy(zero_copy_only=False))
            entries.ones(missing, np.full(missing.size, offset + buckets))
            offset += buckets + 1
        return entries.matrix(), self.labels(table)

    def labels(self, table: pa.Table) -> np.ndarray:
        name = self.label["name"]
        if self.label["task"] == "regression":
            return _checked_numeric(table, name)
        negative, positive = self.label["classes"]
        text = _text_values(table.column(name))
        y = np.full(table.num_rows, np.nan)
        is_positive = _matches(text, positive)
        if negative is None:
            is_negative = ~is_positive & ~text.is_null().to_numpy(zero_copy_only=False)
        else:
            is_negative = _matches(text, negative)
        y[is_positive] = 1.0
        y[is_negative] = 0.0
        return y

    def label_value(self, y: float):
        """Return the original label value for a model prediction."""
        if self.label["task"] == "regression":
            return float(y)
        negative, positive = self.label["classes"]
        if int(y) == 1:
            return positive
        return negative if negative is not None else "not " + positive

    def to_dict(self) -> dict:
        return {"numeric": self.numeric, "categorical": self.categorical, "hashed": self.hashed, "text": self.text,
                "label": self.label, "sparse": self.sparse}

    @classmethod
    def from_dict(cls, data: dict) -> "Featurizer":
        if "function" in data:
            from .config import import_function

            return FunctionFeaturizer(
                import_function(data["function"], "featurizer function"), data["feature_names"],
                columns=data["columns"], label=data["label"]["name"], task=data["label"]["task"],
            )
        return cls(numeric=data["numeric"], categorical=data["categorical"], label=data["label"],
                   hashed=data.get("hashed", []), text=data.get("text", []), sparse=data.get("sparse", False))

    def save(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(self.to_dict(), handle, indent=2)

    @classmethod
    def load(cls, path: str) -> "Featurizer":
        with open(path, encoding="utf-8") as handle:
            return cls.from_dict(json.load(handle))


class FunctionFeaturizer(Featurizer):
    """A user's featurize function in place of a :class:`FeatureSpec`.

    Parameters
    ----------
    function : callable
        ``function(table: pyarrow.Table) -> (X, y)`` with ``X`` of shape
        ``(n, len(feature_names))`` (a numpy array, or any scipy sparse
        matrix, kept as CSR) and ``y`` of shape ``(n,)``; NaN in ``y``
        marks a record unusable for training.  It must be vectorized over the
        table, importable by module and name on the executors, and give a
        cleaned record and its dirty original the same feature space.
    feature_names : list of str
        One name per column of ``X``.
    columns : list of str
        Input columns the function reads, label included.
    label : str
        Label column, named in error messages.
    task : {"classification", "regression"}, default="classification"
        Kind of label the function returns (0/1 for classification).
    """

    def __init__(self, function, feature_names: list[str], *, columns: list[str], label: str,
                 task: str = "classification"):
        if not callable(function):
            raise TypeError(f"featurize function must be callable, got {type(function).__name__}")
        self.function = function
        self._columns = list(columns)
        if label not in self._columns:
            self._columns.append(label)
        super().__init__(numeric=[], categorical=[], label={"name": label, "task": task, "classes": ["0", "1"]})
        self.feature_names = list(feature_names)

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    @property
    def columns(self) -> list[str]:
        return self._columns

    def transform(self, table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
        X, y = self.function(table)
        X = sparse_arrays.csr_array(X, dtype=np.float64) if sparse_arrays.issparse(X) else np.asarray(X, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        expected = (table.num_rows, self.n_features)
        if X.shape != expected:
            raise ValueError(f"featurize function returned X of shape {X.shape}, expected {expected}")
        if y.shape != (table.num_rows,):
            raise ValueError(f"featurize function returned y of shape {y.shape}, expected ({table.num_rows},)")
        return X, y

    def labels(self, table: pa.Table) -> np.ndarray:
        return self.transform(table)[1]

    def to_dict(self) -> dict:
        return {
            "function": f"{self.function.__module__}:{self.function.__qualname__}",
            "feature_names": self.feature_names,
            "columns": self._columns,
            "label": self.label,
        }
