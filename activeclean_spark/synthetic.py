"""Generated tables of any size, with a clean version computed from the key.

Every value is a deterministic function of the record's key and the seed,
so Spark generates the table in parallel without a source file, and the
oracle cleaner recomputes a record's clean values from its key alone.  That
makes it the data of the benchmarks: ten million rows need no disk and no
driver-side reference table.

A record's clean features are uniform on [-sqrt(3), sqrt(3)], so they have
mean 0 and variance 1.  Its label is 1 with the logistic probability of a
fixed linear model of the features.  A share ``rate`` of the records is dirty: their first
``corrupted`` features are replaced by a value ten times larger and of the
opposite sign, and their label is flipped.

With ``words``, each record also has a ``text`` column of that many words
(``w0``, ``w1``, ...) drawn log-uniformly from a vocabulary, so a few words
are frequent and most are rare, as in real text.  Every word has a fixed
weight that adds to the linear model, so the text carries signal.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .cleaners import Cleaner, CleanedBatch

__all__ = ["SyntheticTable", "SyntheticCleaner"]

_SCALE = np.sqrt(3.0)
_MIX = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB))


def _uniform(keys: np.ndarray, stream: int, seed: int) -> np.ndarray:
    """Return a uniform number in [0, 1) per key: a SplitMix64 hash of (seed, stream, key)."""
    with np.errstate(over="ignore"):
        z = keys.astype(np.uint64) * _MIX[0] + np.uint64((seed * 1_000_003 + stream) & 0xFFFFFFFFFFFFFFFF) * _MIX[1]
        z = (z ^ (z >> np.uint64(30))) * _MIX[1]
        z = (z ^ (z >> np.uint64(27))) * _MIX[2]
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


class SyntheticTable:
    """A generated logistic-regression table with ``rows`` records and ``features`` numeric columns.

    Parameters
    ----------
    rows : int
        Number of records; the key column ``id`` runs from 0 to rows - 1.
    features : int
        Number of numeric feature columns ``x0`` ... ``x{features-1}``.
    rate : float, default=0.1
        Share of dirty records.
    corrupted : int, default=3
        Number of leading features a dirty record has corrupted.
    seed : int, default=0
        Seed of every value.
    words : int, default=0
        Words in the ``text`` column of every record; 0 leaves the column out.
    vocabulary : int, default=100000
        Number of distinct words.
    """

    key = "id"
    label = "label"
    text = "text"

    def __init__(self, rows: int, features: int, *, rate: float = 0.1, corrupted: int = 3, seed: int = 0,
                 words: int = 0, vocabulary: int = 100_000):
        if isinstance(rows, bool) or not isinstance(rows, (int, np.integer)) or rows < 1:
            raise ValueError(f"rows must be a positive integer, got {rows!r}")
        if isinstance(features, bool) or not isinstance(features, (int, np.integer)) or features < 1:
            raise ValueError(f"features must be a positive integer, got {features!r}")
        if not 0 <= rate <= 1:
            raise ValueError(f"rate must be a share in [0, 1], got {rate!r}")
        if not 0 <= corrupted <= features:
            raise ValueError(f"corrupted must be between 0 and features ({features}), got {corrupted!r}")
        if isinstance(words, bool) or not isinstance(words, (int, np.integer)) or words < 0:
            raise ValueError(f"words must be an integer >= 0, got {words!r}")
        if isinstance(vocabulary, bool) or not isinstance(vocabulary, (int, np.integer)) or vocabulary < 1:
            raise ValueError(f"vocabulary must be a positive integer, got {vocabulary!r}")
        self.words, self.vocabulary = int(words), int(vocabulary)
        self.rows, self.features, self.rate, self.corrupted, self.seed = int(rows), int(features), rate, corrupted, seed
        weights = np.where(np.arange(self.features) % 2 == 0, 1.0, -1.0) * 2.0 / np.sqrt(self.features)
        self.weights = weights

    @property
    def columns(self) -> list[str]:
        return [f"x{j}" for j in range(self.features)]

    @property
    def schema(self) -> pa.Schema:
        text = [(self.text, pa.string())] if self.words else []
        return pa.schema([(self.key, pa.int64()), *[(name, pa.float64()) for name in self.columns], *text,
                          (self.label, pa.int64())])

    def word_indices(self, keys: np.ndarray) -> np.ndarray:
        """Return the vocabulary index of every word of ``keys``, shape (keys, words)."""
        keys = np.asarray(keys, dtype=np.int64)
        # Stream numbers above the features' and the dirty mask's, one per word position.
        draws = np.stack([_uniform(keys, self.features + 2 + i, self.seed) for i in range(self.words)], axis=1)
        # Log-uniform: index k has probability about 1 / ((k + 1) log V).
        return np.minimum(np.floor(np.exp(draws * np.log(self.vocabulary + 1.0))) - 1, self.vocabulary - 1).astype(
            np.int64).reshape(keys.size, self.words)

    def _text_margins(self, indices: np.ndarray) -> np.ndarray:
        weights = (2.0 * _uniform(np.arange(self.vocabulary), 0, self.seed + 1) - 1.0) * _SCALE
        return weights[indices].sum(axis=1) / np.sqrt(self.words)

    def _text_column(self, indices: np.ndarray) -> pa.Array:
        names = pc.binary_join_element_wise("w", pc.cast(pa.array(indices.ravel()), pa.string()), "")
        offsets = pa.array(np.arange(0, indices.size + 1, self.words, dtype=np.int32))
        return pc.binary_join(pa.ListArray.from_arrays(offsets, names), " ")

    def clean_values(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return the clean features (rows, features) and labels of ``keys``."""
        keys = np.asarray(keys, dtype=np.int64)
        X = np.empty((keys.size, self.features))
        for j in range(self.features):
            X[:, j] = (2.0 * _uniform(keys, j, self.seed) - 1.0) * _SCALE
        margins = X @ self.weights
        if self.words:
            margins += self._text_margins(self.word_indices(keys))
        probability = 1.0 / (1.0 + np.exp(-margins))
        labels = (_uniform(keys, self.features, self.seed) < probability).astype(np.int64)
        return X, labels

    def dirty_mask(self, keys: np.ndarray) -> np.ndarray:
        """Return True for the keys whose records are dirty."""
        return _uniform(np.asarray(keys, dtype=np.int64), self.features + 1, self.seed) < self.rate

    def values(self, keys: np.ndarray, *, clean: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Return the features and labels of ``keys``, dirty unless ``clean``."""
        X, labels = self.clean_values(keys)
        if not clean:
            dirty = self.dirty_mask(keys)
            X[np.ix_(dirty, np.arange(self.corrupted))] *= -10.0
            labels[dirty] = 1 - labels[dirty]
        return X, labels

    def arrow(self, keys: np.ndarray, *, clean: bool = False) -> pa.Table:
        """Return the records of ``keys`` as an Arrow table."""
        keys = np.asarray(keys, dtype=np.int64)
        X, labels = self.values(keys, clean=clean)
        text = [self._text_column(self.word_indices(keys))] if self.words else []
        arrays = [pa.array(keys), *[pa.array(X[:, j]) for j in range(self.features)], *text, pa.array(labels)]
        return pa.Table.from_arrays(arrays, schema=self.schema)

    def dataframe(self, spark, *, clean: bool = False, partitions: int | None = None):
        """Return the table as a Spark DataFrame, generated on the executors."""
        from pyspark.sql.pandas.types import from_arrow_schema

        generate = self.arrow

        def batches(iterator):
            for batch in iterator:
                keys = batch.column(0).to_numpy()
                yield from generate(keys, clean=clean).to_batches()

        partitions = partitions or spark.sparkContext.defaultParallelism
        ids = spark.range(0, self.rows, numPartitions=partitions)
        return ids.mapInArrow(batches, from_arrow_schema(self.schema))

    def feature_spec(self):
        """Return the :class:`FeatureSpec` of the table: every feature numeric, the text hashed, a binary label."""
        from .features import FeatureSpec

        return FeatureSpec(numeric=self.columns, text=[self.text] if self.words else [], label=self.label,
                           task="classification", positive=1)

    def cleaner(self) -> "SyntheticCleaner":
        """Return the oracle cleaner of the table."""
        return SyntheticCleaner(self)


class SyntheticCleaner(Cleaner):
    """Oracle cleaner of a :class:`SyntheticTable`: recomputes the clean values from the key."""

    def __init__(self, table: SyntheticTable):
        self.table = table

    def clean(self, batch: pd.DataFrame, key: str) -> CleanedBatch:
        clean = self.table.arrow(batch[key].to_numpy(), clean=True).to_pandas()
        return CleanedBatch(clean[list(batch.columns)])
