"""The run's output directory: model, cleaned table, history and audit trail.

The audit trail and the history are JSON lines, appended and synced to disk
after every batch, so a failing cleaner, a crash or a kill leaves every
record the cleaner returned on disk.  The model is replaced atomically.
"""

from __future__ import annotations

import datetime
import json
import math
import os

import numpy as np

__all__ = ["OutputDirectory", "CLEANED_COLUMN"]

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


def _dumps(record: dict) -> str:
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

    def __init__(self, path: str, *, overwrite: bool = False):
        self.path = path
        os.makedirs(path, exist_ok=True)
        audit = os.path.join(path, AUDIT_FILE)
        if os.path.exists(audit) and os.path.getsize(audit) > 0 and not overwrite:
            raise FileExistsError(
                f"output directory {path!r} already contains the audit trail of an earlier run's cleaned records; "
                "choose another output directory, or set output.overwrite = true (overwrite=True in Python)"
            )
        for name in (AUDIT_FILE, HISTORY_FILE):
            open(os.path.join(path, name), "w", encoding="utf-8").close()

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def _append(self, name: str, records: list[dict]) -> None:
        # Serialize first, so a value that cannot be written leaves no half batch behind.
        text = "".join(_dumps(record) + "\n" for record in records)
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
        path = self.file(TABLE_DIR)
        table.write.mode("overwrite").parquet(path)
        return path
