"""Cached numpy blocks: one per Spark partition, built from Arrow batches.

The relation is hash-partitioned by the key column and sorted by key inside
each partition, so a record's (partition, position) is the same every time
the block is computed, also when Spark recomputes a lost cached partition.

Spark's cache of a Python RDD holds pickled bytes in the JVM, so every pass
over it streams and unpickles the whole relation again.  At 10^6 x 20 that
costs several times the arithmetic of the pass.  :class:`BlockSet`
therefore also writes each block once to its executor's local directory
(numpy and Arrow files), and the Python workers map those files into
memory: every worker of the executor reads the same pages, without a copy
or a transfer.  A pass runs over a tiny cached RDD of partition numbers.
The partitions whose executor has no file run again over Spark's cache,
which writes the file there.  Spark's cache stays the source of truth, so
a lost executor or file costs time, never a result.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from uuid import uuid4

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql.pandas.types import to_arrow_schema
from scipy import sparse

from .matrices import CSR_PARTS, named_arrays, row_squares, rows_differ

__all__ = [
    "Block", "BlockSet", "arrow_partitions", "featurize_partitions", "check_key", "FLAG_COLUMN", "REFERENCE_PREFIX",
    "SHARED_BLOCKS_CONF",
]

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
    whose cleaning changes their features or label.  ``X`` and
    ``X_reference`` are numpy arrays, or scipy CSR arrays with a sparse
    featurizer.
    """

    partition: int
    keys: np.ndarray
    X: object
    y: np.ndarray
    raw: pa.Table
    flagged: np.ndarray | None = None
    X_reference: object = None
    y_reference: np.ndarray | None = None
    truly_dirty: np.ndarray | None = None

    @property
    def size(self) -> int:
        return self.X.shape[0]

    @property
    def usable(self) -> np.ndarray:
        """True for the records whose label is usable (not NaN)."""
        return self._derived("usable", lambda: ~np.isnan(self.y))

    @property
    def filled_y(self) -> np.ndarray:
        """Labels with 0 for the unusable ones, so that loss arithmetic over all rows stays finite."""
        return self._derived("filled_y", lambda: np.where(self.usable, self.y, 0.0))

    @property
    def row_squares(self) -> np.ndarray:
        """Squared norm of every feature row."""
        return self._derived("row_squares", lambda: row_squares(self.X))

    def _derived(self, name, compute):
        # Computed once per block; a block a worker holds keeps them between passes.
        cache = self.__dict__.setdefault("_cache", {})
        if name not in cache:
            cache[name] = compute()
        return cache[name]


# Spark setting: "false" keeps the blocks in Spark's cache only, so every
# pass unpickles them again (slower, but writes nothing to local disk).
SHARED_BLOCKS_CONF = "spark.activeclean.sharedBlocks"

_ARRAYS = ("keys", "X", "y", "flagged", "X_reference", "y_reference", "truly_dirty")

# Blocks this Python worker has mapped, keyed by (block set, partition).
_MAPPED: dict = {}


def _block_path(token: str, partition: int) -> str:
    # Spark gives each Python worker its executor's local directories, and
    # deletes them when the application ends.
    roots = os.environ.get("SPARK_LOCAL_DIRS") or tempfile.gettempdir()
    return os.path.join(roots.split(",")[0], "activeclean-blocks", f"{token}-{partition}")


def _write(token: str, block: Block) -> None:
    """Write ``block`` to the executor's local directory, unless a worker already did."""
    final = _block_path(token, block.partition)
    if os.path.isdir(final):
        return
    partial = f"{final}.{os.getpid()}.partial"
    try:
        os.makedirs(partial, exist_ok=True)
        for name in _ARRAYS:
            values = getattr(block, name)
            if values is None:
                continue
            for file, part in named_arrays(name, values).items():
                np.save(os.path.join(partial, file + ".npy"), part, allow_pickle=part.dtype == object)
        with pa.OSFile(os.path.join(partial, "raw.arrow"), "wb") as sink:
            with pa.ipc.new_file(sink, block.raw.schema) as writer:
                writer.write_table(block.raw)
        os.rename(partial, final)
    except OSError:
        # A full disk, or another worker renamed its copy first: the pass
        # goes on from Spark's cache either way.
        shutil.rmtree(partial, ignore_errors=True)


def _mapped(token: str, partition: int) -> Block | None:
    """Return the block as memory maps of its files on this executor, or None when it has none."""
    key = (token, partition)
    if key in _MAPPED:
        return _MAPPED[key]
    for stale in [k for k in _MAPPED if not os.path.isdir(_block_path(*k))]:
        del _MAPPED[stale]  # a released block set: unmapping frees its pages
    path = _block_path(token, partition)
    if not os.path.isdir(path):
        return None
    try:
        block = _map_files(path, partition)
    except (OSError, MemoryError):
        # A worker whose address space is limited (spark.executor.pyspark.memory)
        # may fail to map a block; the pass then reads Spark's cached copy.
        return None
    _MAPPED[key] = block
    return block


def _map_files(path: str, partition: int) -> Block:
    fields = {}
    for name in _ARRAYS:
        file = os.path.join(path, name + ".npy")
        if os.path.exists(file):
            try:
                fields[name] = np.load(file, mmap_mode="r").view(np.ndarray)
            except ValueError:  # keys of Python objects (strings) cannot be mapped
                fields[name] = np.load(file, allow_pickle=True)
        elif os.path.exists(os.path.join(path, f"{name}.data.npy")):
            data, indices, indptr, shape = (
                np.load(os.path.join(path, f"{name}.{part}.npy"), mmap_mode="r").view(np.ndarray)
                for part in CSR_PARTS
            )
            # copy=False keeps the mapped arrays; scipy only checks their shapes.
            fields[name] = sparse.csr_array((data, indices, indptr), shape=tuple(shape), copy=False)
    raw = pa.ipc.open_file(pa.memory_map(os.path.join(path, "raw.arrow"))).read_all()
    return Block(partition=partition, raw=raw, **fields)


def _remove(token: str) -> None:
    root = os.path.dirname(_block_path(token, 0))
    if os.path.isdir(root):
        for name in os.listdir(root):
            if name.startswith(token + "-"):
                shutil.rmtree(os.path.join(root, name), ignore_errors=True)
    for key in [k for k in _MAPPED if k[0] == token]:
        del _MAPPED[key]


class BlockSet:
    """The cached blocks of one relation, one per partition, shared by the Python workers of each executor.

    ``map_collect(function)`` returns ``[function(block) for each block]``
    in partition order.  ``rdd`` is Spark's persisted copy.  A pass reads it
    again for a partition whose executor has no file of it, and Spark
    recomputes it from its source when it lost it.
    """

    def __init__(self, rdd):
        """Persist ``rdd``, an RDD of one :class:`Block` per partition; nothing runs until the first pass."""
        self.context = rdd.context
        self.token = uuid4().hex
        self.shared = self.context.getConf().get(SHARED_BLOCKS_CONF, "true").lower() != "false"
        # With the files serving the passes, Spark's copy is only read after
        # a loss, so it stays on disk and leaves the JVM's memory free.
        self.rdd = rdd.persist(StorageLevel.DISK_ONLY if self.shared else StorageLevel.MEMORY_AND_DISK)
        token = self.token

        def write_all(blocks):
            for block in blocks:
                _write(token, block)
                yield block.partition

        # Its cached partitions sit on the executors that wrote the files, so
        # Spark schedules the passes there.
        self.partitions = rdd.mapPartitions(write_all).persist(StorageLevel.MEMORY_ONLY) if self.shared else None
        self.missed = 0  # partitions read from Spark's cache because their executor had no file

    @property
    def num_partitions(self) -> int:
        return self.rdd.getNumPartitions()

    def map_collect(self, function) -> list:
        """Return ``function(block)`` of every block, in partition order."""
        if not self.shared:
            return self.rdd.map(function).collect()
        token = self.token

        def on_files(partitions):
            for partition in partitions:
                block = _mapped(token, partition)
                yield (partition, False, None) if block is None else (partition, True, function(block))

        def on_cache(blocks):
            for block in blocks:
                _write(token, block)
                yield block.partition, True, function(block)

        results = self.partitions.mapPartitions(on_files).collect()
        missing = [partition for partition, found, _ in results if not found]
        if missing:
            self.missed += len(missing)
            results += self.context.runJob(self.rdd, on_cache, missing)
        values = {partition: value for partition, found, value in results if found}
        return [values[partition] for partition in sorted(values)]

    def collect(self) -> list[Block]:
        """Return every block on the driver (small relations and tests only)."""
        return self.rdd.collect()

    def unpersist(self) -> None:
        """Drop Spark's cached copies and, on the executors a cleanup task reaches, the block files.

        Spark deletes the files of any executor missed here when the application ends.
        """
        if self.partitions is not None:
            token = self.token
            tasks = max(self.context.defaultParallelism, self.num_partitions)
            self.context.parallelize(range(tasks), tasks).foreach(lambda _: _remove(token))
            self.partitions.unpersist()
        self.rdd.unpersist()


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
    return ~rows_differ(X, X_other) & same_label


def featurize_partitions(partitions, featurizer, key: str, *, predicate=None) -> BlockSet:
    """Turn ``(partition, table)`` pairs into a :class:`BlockSet`.

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

    # NOTE: Spark receives each block as one pickled object in one byte
    # array, which Java limits to 2 GB.  The engine's default partition
    # count keeps blocks near 1 GiB by an estimate; a count set by hand
    # must keep them below 2 GB too.
    return BlockSet(partitions.map(to_block))
