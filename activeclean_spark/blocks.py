"""Cached numpy blocks: one per Spark partition, built from Arrow batches.

The relation is hash-partitioned by the key column and sorted by key inside
each partition, so a record's (partition, position) is the same every time
the block is computed, also when Spark recomputes a lost cached partition.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql.pandas.types import to_arrow_schema

__all__ = ["Block", "arrow_partitions", "featurize_partitions", "check_key"]


@dataclass
class Block:
    """One partition's records: keys, features, labels and the original row values."""

    partition: int
    keys: np.ndarray
    X: np.ndarray
    y: np.ndarray
    raw: pa.Table

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


def featurize_partitions(partitions, featurizer, key: str):
    """Turn ``(partition, table)`` pairs into cached :class:`Block` objects."""

    def to_block(item):
        index, table = item
        X, y = featurizer.transform(table)
        keys = table.column(key).to_numpy(zero_copy_only=False)
        return Block(partition=index, keys=keys, X=X, y=y, raw=table)

    return partitions.map(to_block).persist(StorageLevel.MEMORY_AND_DISK)
