"""The run's output directory: model, cleaned table, history and audit trail.

The audit trail and the history are JSON lines, appended and synced to disk
after every batch, so a failing cleaner, a crash or a kill leaves every
record the cleaner returned on disk.  The models and the cleaned table are
replaced atomically, so a reader finds the old or the new one, never a mix.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import uuid

import numpy as np

from .storage import HadoopStorage

__all__ = ["OutputDirectory", "CLEANED_COLUMN", "dumps_record", "publish_table"]

CLEANED_COLUMN = "_cleaned"
AUDIT_FILE = "audit.jsonl"
HISTORY_FILE = "history.jsonl"
TABLE_DIR = "cleaned_table"


def _json_value(value):
    if value is None:
        return None
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def _finite(value):
    """Replace NaN and infinities, which JSON cannot hold, by null throughout a record."""
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    if isinstance(value, (float, np.floating)) and not math.isfinite(value):
        return None
    return value


def dumps_record(record: dict) -> str:
    """Return a record as one line of JSON: numpy values as numbers, NaN and infinities as null."""
    return json.dumps(_finite(record), default=_json_value, allow_nan=False)


class OutputDirectory:
    """Writer for one run's output directory.

    NOTE: the JSON files go through local file I/O, so ``path`` must be a
    local directory even on a cluster.  Only the table is written by Spark.

    Parameters
    ----------
    path : str
        Directory to write.
    overwrite : bool, default=False
        Replace the outputs of an earlier run.  Without it, an audit trail
        with records in ``path`` is an error, so no cleaned record is
        discarded by a rerun.
    """

    def __init__(self, path: str, *, overwrite: bool = False, resume: bool = False):
        self.path = path
        os.makedirs(path, exist_ok=True)
        if resume:
            return  # :meth:`keep_through` trims the files once the checkpoint's iteration is known
        audit = os.path.join(path, AUDIT_FILE)
        if os.path.exists(audit) and os.path.getsize(audit) > 0 and not overwrite:
            raise FileExistsError(
                f"output directory {path!r} already contains the audit trail of an earlier run's cleaned records; "
                "choose another output directory, or set output.overwrite = true (overwrite=True in Python)"
            )
        for name in (AUDIT_FILE, HISTORY_FILE):
            open(os.path.join(path, name), "w", encoding="utf-8").close()

    def keep_through(self, iteration: int) -> None:
        """Keep the audit and history lines of iterations up to ``iteration`` and drop the rest.

        A resumed run calls this with its checkpoint's iteration: the lines of
        the iteration that was cut off are written again when it reruns.  A
        line cut short by a kill is dropped too.
        """
        for name in (AUDIT_FILE, HISTORY_FILE):
            path = self.file(name)
            earlier = []
            if os.path.exists(path):
                with open(path, encoding="utf-8") as handle:
                    for line in handle:
                        try:
                            record = json.loads(line)
                        except ValueError:
                            continue
                        if record.get("iteration", 0) <= iteration:
                            earlier.append(line if line.endswith("\n") else line + "\n")
            temporary = path + ".tmp"
            with open(temporary, "w", encoding="utf-8") as handle:
                handle.writelines(earlier)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def _append(self, name: str, records: list[dict]) -> None:
        # Serialize first, so a value that cannot be written leaves no half batch behind.
        text = "".join(dumps_record(record) + "\n" for record in records)
        with open(self.file(name), "a", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())

    def append_audit(self, records: list[dict]) -> None:
        self._append(AUDIT_FILE, records)

    def append_history(self, record: dict) -> None:
        self._append(HISTORY_FILE, [record])

    def write_table(self, df, key: str, cleaned_rows, removed_keys: list) -> str:
        """Write the partially cleaned table as Parquet and return its path.

        ``cleaned_rows`` is an Arrow table with the input schema.  Removed
        records are left out and a boolean ``_cleaned`` column marks the rows
        whose values came from the cleaner.
        """
        from pyspark.sql import functions as F

        spark = df.sparkSession
        replaced = [*cleaned_rows.column(key).to_pylist(), *removed_keys]
        untouched = df
        if replaced:
            keys = spark.createDataFrame([(k,) for k in replaced], df.select(key).schema)
            untouched = df.join(F.broadcast(keys), on=key, how="left_anti")
        table = untouched.select(*df.columns).withColumn(CLEANED_COLUMN, F.lit(False))
        if cleaned_rows.num_rows:
            cleaned = spark.createDataFrame(cleaned_rows.to_pandas(), schema=df.schema)
            table = table.unionByName(cleaned.withColumn(CLEANED_COLUMN, F.lit(True)))
        return publish_table(table, self.file(TABLE_DIR))


def publish_table(table, path: str) -> str:
    """Write a Spark DataFrame as Parquet at ``path`` so that a reader never sees it half-written.

    Spark writes into a new directory beside ``path``; the finished
    directory then replaces the old one by two renames.  Between them a
    reader finds no table, never part of one.  The renames go through
    Hadoop's FileSystem API, so they resolve ``path`` as Spark's writer
    does: a path without a scheme is on the default filesystem (the local
    disk in local mode, often HDFS on a YARN cluster).
    """
    storage = HadoopStorage(table.sparkSession)
    token = uuid.uuid4().hex[:12]
    written, retired = f"{path}.{token}.writing", f"{path}.{token}.old"
    table.write.parquet(written)
    if storage.exists(path):
        storage.rename(path, retired)
    storage.rename(written, path)
    storage.delete(retired)
    parent, base = os.path.split(path.rstrip("/"))
    for name in storage.list(parent or "."):
        # Leftovers of a writer that was killed before its renames.
        if name.startswith(base + ".") and name.endswith((".writing", ".old")):
            storage.delete(storage.join(parent or ".", name))
    return path
