"""Cleaners: the user's procedure that turns dirty records into clean ones.

A cleaner takes a pandas DataFrame of dirty records (all input columns, the
key included) and returns a :class:`CleanedBatch`.  Three kinds are built in:

* :class:`RecordCleaner` wraps ``f(record: dict) -> dict | None``; ``None``
  removes the record.
* :class:`BatchCleaner` wraps ``f(batch: pandas.DataFrame) -> DataFrame`` with
  the same columns and one row per input key.  An optional boolean column
  ``__removed__`` marks records to remove.
* :class:`OracleCleaner` looks every record up by key in a clean table.

A cleaner may report the operation it applied to each record: a record
cleaner's dict gets an ``__operation__`` entry, a batch cleaner's output an
``__operation__`` column.  A learned detector uses it as the error class.

Whatever the kind, the output is checked by :func:`validate_cleaned`: a
cleaner that raises, changes the schema, drops keys or invents keys stops the
run with a :class:`CleanerError` that names the record and the problem.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pandas as pd
import pyarrow as pa
from pyspark import StorageLevel

__all__ = [
    "CleanedBatch",
    "Cleaner",
    "CleanerError",
    "RecordCleaner",
    "BatchCleaner",
    "OracleCleaner",
    "REMOVED_COLUMN",
    "validate_cleaned",
]

logger = logging.getLogger(__name__)

REMOVED_COLUMN = "__removed__"
OPERATION_COLUMN = "__operation__"


class CleanerError(RuntimeError):
    """The cleaner failed or returned an invalid batch.

    ``partial`` contains the records the cleaner did return before it failed, as
    a :class:`CleanedBatch` (possibly empty); the engine saves them.
    """

    def __init__(self, message: str, partial: "CleanedBatch | None" = None):
        super().__init__(message)
        self.partial = partial


@dataclass
class CleanedBatch:
    """Cleaned records: ``table`` has the input columns; ``removed`` lists removed keys.

    ``operations`` maps a key to the cleaning operation applied to it, when the cleaner reports one.
    """

    table: pd.DataFrame
    removed: list = field(default_factory=list)
    operations: dict = field(default_factory=dict)


class Cleaner:
    """Base class; subclasses implement :meth:`clean`.

    A cleaner that finishes records one at a time (a person, a slow
    service) can set ``reports_records = True`` and accept a keyword
    ``returned``: calling ``returned(key, record, operation)`` for each
    finished record (``record`` None when removed) lets a run with a
    checkpoint keep it even if the driver is killed before the batch ends.
    """

    reports_records = False

    def clean(self, batch: pd.DataFrame, key: str) -> CleanedBatch:
        raise NotImplementedError


class _FunctionCleaner(Cleaner):
    def __init__(self, function):
        if not callable(function):
            raise TypeError(f"cleaner function must be callable, got {type(function).__name__}")
        self.function = function


class RecordCleaner(_FunctionCleaner):
    """Apply ``function(record: dict) -> dict | None`` to every record."""

    reports_records = True

    def clean(self, batch, key, returned=None):
        rows, removed, operations = [], [], {}
        # Missing values reach the function as None, as Spark shows them,
        # instead of the NaN that pandas uses in numeric columns.
        records = batch.astype(object).where(batch.notna(), None).to_dict(orient="records")
        for record in records:
            try:
                result = self.function(dict(record))
            except Exception as error:
                partial = CleanedBatch(pd.DataFrame(rows, columns=batch.columns), removed)
                raise CleanerError(
                    f"cleaner raised {type(error).__name__} on record {key}={record[key]!r}: {error}",
                    partial,
                ) from error
            if result is None:
                removed.append(record[key])
                if returned is not None:
                    returned(record[key], None, None)
                continue
            if not isinstance(result, dict):
                raise CleanerError(
                    f"cleaner returned {type(result).__name__} for record {key}={record[key]!r}; "
                    "return a dict with the record's columns, or None to remove it",
                    CleanedBatch(pd.DataFrame(rows, columns=batch.columns), removed),
                )
            if OPERATION_COLUMN in result:
                result = dict(result)
                operations[record[key]] = result.pop(OPERATION_COLUMN)
            rows.append(result)
            if returned is not None:
                returned(record[key], result, operations.get(record[key]))
        table = pd.DataFrame(rows) if rows else pd.DataFrame(columns=batch.columns)
        return CleanedBatch(table, removed, operations)


class BatchCleaner(_FunctionCleaner):
    """Apply ``function(batch: pandas.DataFrame) -> pandas.DataFrame`` to a whole batch."""

    def clean(self, batch, key):
        try:
            result = self.function(batch.copy())
        except Exception as error:
            keys = ", ".join(repr(k) for k in batch[key].tolist()[:5])
            raise CleanerError(
                f"cleaner raised {type(error).__name__} on the batch with {key} {keys} ...: {error}",
                CleanedBatch(pd.DataFrame(columns=batch.columns)),
            ) from error
        if not isinstance(result, pd.DataFrame):
            raise CleanerError(
                f"batch cleaner returned {type(result).__name__}; return a pandas DataFrame",
                CleanedBatch(pd.DataFrame(columns=batch.columns)),
            )
        removed = []
        if REMOVED_COLUMN in result.columns:
            flags = result[REMOVED_COLUMN].fillna(False).astype(bool)
            removed = result.loc[flags, key].tolist()
            result = result.loc[~flags].drop(columns=[REMOVED_COLUMN])
        operations = {}
        if OPERATION_COLUMN in result.columns:
            reported = result[OPERATION_COLUMN].notna()
            operations = dict(zip(result.loc[reported, key], result.loc[reported, OPERATION_COLUMN].astype(str)))
            result = result.drop(columns=[OPERATION_COLUMN])
        return CleanedBatch(result.reset_index(drop=True), removed, operations)


class OracleCleaner(Cleaner):
    """Look every record up by key in a clean table.

    Parameters
    ----------
    clean : pyspark.sql.DataFrame or pandas.DataFrame
        Clean table with at least the input columns and the key.  A pandas
        table is looked up on the driver without a Spark job, which suits
        a small reference table and repeated experiments.
    key : str
        Key column.
    missing : {"error", "remove"}, default="error"
        What a key absent from the clean table means: a mistake, or a record
        the cleaning removed (as a deduplicated clean table shows it).
    """

    def __init__(self, clean, key: str, *, missing: str = "error"):
        if missing not in ("error", "remove"):
            raise ValueError(f"missing must be 'error' or 'remove', got {missing!r}")
        if key not in clean.columns:
            raise ValueError(f"key column {key!r} not found in the clean table; its columns are {clean.columns}")
        if isinstance(clean, pd.DataFrame):
            if clean[key].duplicated().any():
                raise ValueError(f"key column {key!r} of the clean table is not unique")
            self.clean_table = clean.set_index(key, drop=False)
        else:
            # The oracle is queried once per batch, so the clean table is cached
            # instead of being read from its source every time.
            self.clean_table = clean.persist(StorageLevel.MEMORY_AND_DISK)
        self.key = key
        self.missing = missing

    def check_columns(self, columns: list[str]) -> None:
        """Raise ValueError when the clean table lacks one of the input columns."""
        absent = [c for c in columns if c not in self.clean_table.columns]
        if absent:
            raise ValueError(f"clean table has no column {absent}; it needs every input column")

    def clean(self, batch, key):
        from pyspark.sql import functions as F

        keys = batch[key].tolist()
        if isinstance(self.clean_table, pd.DataFrame):
            index = self.clean_table.index
            found = self.clean_table.loc[[k for k in keys if k in index], list(batch.columns)].reset_index(drop=True)
        else:
            found = self.clean_table.where(F.col(self.key).isin(keys)).select(*batch.columns).toPandas()
        present = set(found[key].tolist())
        absent = [k for k in keys if k not in present]
        if absent and self.missing == "error":
            raise CleanerError(
                f"oracle clean table has no record with {key}={absent[0]!r} "
                f"({len(absent)} of the batch missing); set missing = \"remove\" if absence means removal",
                CleanedBatch(found),
            )
        return CleanedBatch(found, absent)


def _arrow_column(series: pd.Series, field_type: pa.DataType):
    return pa.Array.from_pandas(series, type=field_type)


def _first_invalid(table: pd.DataFrame, key: str, name: str, field_type: pa.DataType):
    """Return the key and value of the first row whose value in column ``name`` does not fit ``field_type``."""
    for record_key, value in zip(table[key].tolist(), table[name].tolist()):
        try:
            pa.array([value], type=field_type, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
            return record_key, value
    return None, None


def validate_cleaned(batch: pd.DataFrame, cleaned: CleanedBatch, key: str, schema: pa.Schema) -> pa.Table:
    """Check a cleaner's output against its input and return the cleaned rows as Arrow.

    Raises CleanerError when columns were added or dropped, a value does not
    fit its column's type, a key was dropped, duplicated or invented.
    """
    table = cleaned.table
    expected = list(batch.columns)
    extra = [c for c in table.columns if c not in expected]
    absent = [c for c in expected if c not in table.columns]
    if extra or absent:
        keys = ", ".join(repr(k) for k in batch[key].tolist()[:5])
        raise CleanerError(
            f"cleaner changed the schema of the batch with {key} {keys} ...: added columns {extra}, "
            f"dropped columns {absent}; return exactly the input columns",
            cleaned,
        )

    sent = batch[key].tolist()
    returned = table[key].tolist() + list(cleaned.removed)
    sent_keys = set(sent)
    unknown = [k for k in returned if k not in sent_keys]
    if unknown:
        raise CleanerError(
            f"cleaner returned record {key}={unknown[0]!r}, which was not in the batch; keys must not change",
            CleanedBatch(table[~table[key].isin(unknown)], [k for k in cleaned.removed if k in sent_keys]),
        )
    seen = set()
    for k in returned:
        if k in seen:
            raise CleanerError(
                f"cleaner returned record {key}={k!r} more than once",
                CleanedBatch(table.drop_duplicates(subset=[key]), list(dict.fromkeys(cleaned.removed))),
            )
        seen.add(k)
    dropped = [k for k in sent if k not in seen]
    if dropped:
        raise CleanerError(
            f"cleaner dropped record {key}={dropped[0]!r} ({len(dropped)} in all); "
            "return every record, or remove it explicitly (None from a record cleaner, "
            f"{REMOVED_COLUMN} = True from a batch cleaner)",
            CleanedBatch(table, list(cleaned.removed)),
        )

    arrays = []
    for name in schema.names:
        try:
            arrays.append(_arrow_column(table[name], schema.field(name).type))
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError) as error:
            record_key, value = _first_invalid(table, key, name, schema.field(name).type)
            raise CleanerError(
                f"cleaner returned {name}={value!r} for record {key}={record_key!r}, which is not of the "
                f"column's type {schema.field(name).type} ({error}); return a value of that type or None",
                cleaned,
            ) from None
    return pa.Table.from_arrays(arrays, schema=schema)
