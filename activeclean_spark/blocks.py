"""Cached numpy blocks: one per Spark partition, built from Arrow batches.

The relation is hash-partitioned by the key column and sorted by key inside
each partition, so a record's (partition, position) is the same every time
the block is computed, also when Spark recomputes a lost cached partition.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql.pandas.types import to_arrow_schema

__all__ = ["Block", "arrow_partitions", "featurize_partitions", "check_key", "FLAG_COLUMN", "REFERENCE_PREFIX"]

# Columns that travel with the input rows into the blocks and are split off there.
FLAG_COLUMN = "__activeclean_flag__"
REFERENCE_PREFIX = "__activeclean_reference__"


@dataclass
class Block:
    """One partition's records: keys, features, labels and the original row values.

    ``flagged`` marks the records a rule detector flags as possibly dirty
    (None: no rule).  ``X_reference`` and ``y_reference`` are the features of
    the fully clean version of each record when it is known (NaN label: the
    clean table lacks the record), and ``truly_dirty`` marks the records
    whose cleaning changes their features or label.
    """

    partition: int
    keys: np.ndarray
    X: np.ndarray
    y: np.ndarray
    raw: pa.Table
    flagged: np.ndarray | None = None
    X_reference: np.ndarray | None = None
    y_reference: np.ndarray | None = None
    truly_dirty: np.ndarray | None = None

    @property
    def size(self) -> int:
        return self.X.shape[0]


def check_key(df: DataFrame, key: str) -> None:
    """Raise ValueError when the key column is missing, null or not unique."""
    from pyspark.sql import functions as F

    if key not in df.columns:
        raise ValueError(f"key column {key!r} not found; columns are {df.columns}")
    nulls = df.where(F.col(key).isNull()).limit(1).count()
    if nulls:
        raise ValueError(
            f"key column {key!r} contains null values; give every record a unique key "
            "(the configuration's input.row_number = true numbers the rows of a single file)"
        )
    duplicates = df.groupBy(key).count().where(F.col("count") > 1).limit(3).collect()
    if duplicates:
        duplicate_keys = ", ".join(repr(row[key]) for row in duplicates)
        raise ValueError(
            f"key column {key!r} is not unique: {duplicate_keys} occur more than once; "
            "deduplicate the table or choose a key column that identifies each record"
        )


def arrow_partitions(df: DataFrame, key: str, num_partitions: int):
    """Return an RDD with one ``(partition, pyarrow.Table)`` pair per partition."""
    schema = to_arrow_schema(df.schema)
    ordered = df.repartition(num_partitions, key).sortWithinPartitions(key)

    def serialize(batches):
        for batch in batches:
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, batch.schema) as writer:
                writer.write_batch(batch)
            yield pa.RecordBatch.from_pydict({"ipc": [sink.getvalue().to_pybytes()]})

    def concatenate(index, rows):
        batches = [pa.ipc.open_stream(row[0]).read_all() for row in rows]
        tables = [t.cast(schema) for t in batches if t.num_rows]
        table = pa.concat_tables(tables) if tables else schema.empty_table()
        yield index, table

    return ordered.mapInArrow(serialize, "ipc binary").rdd.mapPartitionsWithIndex(concatenate)


def _same_features(X, y, X_other, y_other) -> np.ndarray:
    """Return True for the rows whose features and label agree (two NaN labels agree)."""
    same_label = (y == y_other) | (np.isnan(y) & np.isnan(y_other))
    return np.all(X == X_other, axis=1) & same_label


def featurize_partitions(partitions, featurizer, key: str, *, predicate=None):
    """Turn ``(partition, table)`` pairs into cached :class:`Block` objects.

    The tables may carry the rule flag column and the reference columns
    (``REFERENCE_PREFIX`` + input column); they are split off into the
    block's fields.  ``predicate`` is a rule detector's
    ``flags(table) -> bool array``, applied to the input columns.
    """

    def to_block(item):
        index, table = item
        names = table.column_names
        reference_names = [n for n in names if n.startswith(REFERENCE_PREFIX)]
        raw = table.select([n for n in names if n != FLAG_COLUMN and n not in reference_names])
        X, y = featurizer.transform(raw)
        block = Block(partition=index, keys=raw.column(key).to_numpy(zero_copy_only=False), X=X, y=y, raw=raw)
        if FLAG_COLUMN in names:
            # A null result of the rule counts as flagged.
            flags = pc.fill_null(table.column(FLAG_COLUMN), True)
            block.flagged = flags.to_numpy(zero_copy_only=False).astype(bool)
        elif predicate is not None:
            block.flagged = predicate(raw) if raw.num_rows else np.zeros(0, dtype=bool)
        if reference_names:
            reference = table.select(reference_names).rename_columns([n[len(REFERENCE_PREFIX):] for n in reference_names])
            present = table.column(REFERENCE_PREFIX + key).is_valid().to_numpy(zero_copy_only=False)
            X_reference, y_reference = featurizer.transform(reference)
            block.X_reference, block.y_reference = X_reference, np.where(present, y_reference, np.nan)
            block.truly_dirty = ~_same_features(X, y, block.X_reference, block.y_reference) | ~present
        return block

    return partitions.map(to_block).persist(StorageLevel.MEMORY_AND_DISK)
