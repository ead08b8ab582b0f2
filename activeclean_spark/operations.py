"""Cleaning operations: named, repeatable fixes that an analyst applies to dirty records.

An operation takes a pandas DataFrame of records (all input columns, the key
included) and returns a new frame with the fix applied.  Its ``name`` becomes
the error class of the records it cleaned, so a learned detector can learn
the class and the same operation can later be applied to every record the
detector puts in it.  The built-in kinds are:

* :class:`Remove` marks records for removal and changes no value.
* :class:`Impute` fills missing cells with a column's mean, median, most
  frequent value or a constant.
* :class:`SetValue` writes one value into a column, in every row or in the
  rows a condition selects.
* :class:`MapValues` replaces values by a lookup table.
* :class:`RegexReplace` rewrites text with a regular expression.
* :class:`Clip` limits numbers to a range.
* :class:`ParseNumber` turns text such as ``"12.0 oz."`` or ``"0.05%"`` into
  a number, with optional unit factors.
* :class:`Custom` wraps a user function.

Every operation is deterministic and vectorized over the frame.
:meth:`Operation.describe` returns a JSON-serializable dict for an audit
trail, and :func:`operation_from_dict` rebuilds the operation from it, for
every kind except :class:`Custom`.

Operations keep each column's type so that the result still fits the table's
Arrow schema.  A text column (object or string dtype) receives numbers as
text: ``"12"`` for an integral value, otherwise the shortest ``repr``
(``"0.05"``).  An integer column receives integers and a float column floats.
Writing a missing value into an ``int64`` or ``bool`` column turns it into
pandas' nullable ``Int64`` or ``boolean`` dtype, which maps to the same Arrow
type.

This module imports pandas and numpy only.  pyspark is imported by
:meth:`Impute.fit_spark` when it runs.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

from .detector import CLEAN, REMOVED

__all__ = [
    "Operation",
    "Remove",
    "Impute",
    "SetValue",
    "MapValues",
    "RegexReplace",
    "Clip",
    "ParseNumber",
    "Custom",
    "NotFittedError",
    "operation_from_dict",
]

STRATEGIES = ("mean", "median", "most_frequent", "constant")
CHANGES_COLUMNS = ["row", "column", "before", "after"]

# A number written as text: optional sign, digits with an optional decimal
# point, optional exponent, surrounding blanks.  Written with [0-9] and an
# explicit blank set so that Python's re and Java's regex (used by Spark in
# Impute.fit_spark) accept the same ASCII strings.
NUMBER_TEXT = r"^[ \t\r\n]*([+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)[ \t\r\n]*$"

# ParseNumber's input: a number that may group thousands with commas, then an
# optional unit.  The unit must start with a letter or "%", so "1,23" or
# "12-16 oz" are not read as 1 or 12.
QUANTITY_TEXT = (
    r"^\s*([+-]?(?:(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)"
    r"\s*((?:[^\W\d_]|%).*?)?\s*$"
)

# Integral floats at or above 2**53 are not all exact integers, so they keep
# their repr ("1e+20") instead of being written out digit by digit.
EXACT_INTEGER_LIMIT = 2.0**53


class NotFittedError(ValueError):
    """An operation that computes a statistic was applied before the statistic was computed."""


# ---------------------------------------------------------------------------
# Values and columns
# ---------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """Return ``value`` as a plain Python scalar: numpy scalars unwrapped, NaN and pandas NA as None."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, Decimal):
        value = float(value)
    if value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _check_scalar(value: Any, parameter: str) -> Any:
    """Return ``value`` as a JSON-able scalar (str, int, float, bool or None), or raise."""
    value = _plain(value)
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{parameter} must be a finite number, got {value!r}")
        return value
    raise TypeError(f"{parameter} must be a str, int, float, bool or None, got {type(value).__name__} {value!r}")


def _check_number(value: Any, parameter: str) -> float | int | None:
    value = _check_scalar(value, parameter)
    if isinstance(value, (bool, str)):
        raise TypeError(f"{parameter} must be a number, got {type(value).__name__} {value!r}")
    return value


def _check_column_name(column: Any) -> str:
    if not isinstance(column, str) or not column:
        raise TypeError(f"column must be a non-empty column name (str), got {column!r}")
    return column


def _check_name(name: Any, removes: bool) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"operation name must be a non-empty string, got {name!r}")
    if name == CLEAN:
        raise ValueError(f"operation name {CLEAN!r} is reserved for records left unchanged; choose another name")
    if name == REMOVED and not removes:
        raise ValueError(
            f"operation name {REMOVED!r} is reserved for removed records; choose another name, or use Remove()"
        )
    return name


def _check_frame(frame: Any, name: str) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"operation {name!r} needs a pandas DataFrame of records, got {type(frame).__name__}")


def _column(frame: pd.DataFrame, column: str, name: str) -> pd.Series:
    if column not in frame.columns:
        raise ValueError(
            f"operation {name!r} needs column {column!r}, which the frame does not have; "
            f"the frame's columns are {list(frame.columns)}"
        )
    return frame[column]


def _column_kind(dtype: Any, column: str) -> str:
    """Return "text", "integer", "float" or "boolean" for a pandas dtype, or raise for other dtypes."""
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
    if pd.api.types.is_integer_dtype(dtype):
        return "integer"
    if pd.api.types.is_float_dtype(dtype):
        return "float"
    if dtype == object or isinstance(dtype, pd.StringDtype):
        return "text"
    raise TypeError(
        f"column {column!r} has dtype {dtype}; cleaning operations support text, integer, float and boolean columns"
    )


def _text_mask(series: pd.Series) -> np.ndarray:
    """Return which cells hold a str."""
    if isinstance(series.dtype, pd.StringDtype):
        return series.notna().to_numpy()
    if series.dtype != object:
        return np.zeros(len(series), dtype=bool)
    # Columns read from Spark hold only str and None, and infer_dtype
    # confirms that without calling Python per cell.
    if pd.api.types.infer_dtype(series, skipna=True) in ("string", "empty"):
        return series.notna().to_numpy()
    return series.map(lambda value: isinstance(value, str)).to_numpy(dtype=bool)


def _text_numbers(series: pd.Series) -> np.ndarray:
    """Return the number in every cell whose text is a plain number (see NUMBER_TEXT), NaN elsewhere."""
    numbers = np.full(len(series), np.nan)
    mask = _text_mask(series)
    if mask.any():
        extracted = series[mask].astype(object).str.extract(NUMBER_TEXT, expand=False)
        numbers[mask] = extracted.astype(float).to_numpy()
    numbers[~np.isfinite(numbers)] = np.nan
    return numbers


def _numbers(series: pd.Series, kind: str) -> np.ndarray:
    """Return every cell as a finite float, NaN where the cell is missing or not a number."""
    if kind == "text":
        return _text_numbers(series)
    if kind in ("integer", "float"):
        numbers = series.to_numpy(dtype=float, na_value=np.nan)
        return np.where(np.isfinite(numbers), numbers, np.nan)
    return np.full(len(series), np.nan)


def _format_numbers(values: np.ndarray) -> np.ndarray:
    """Format floats as text: integral values without ".0" ("12"), others by their shortest repr ("0.05")."""
    values = np.asarray(values, dtype=float)
    text = values.astype(str).astype(object)
    integral = np.isfinite(values) & (values == np.trunc(values)) & (np.abs(values) < EXACT_INTEGER_LIMIT)
    text[integral] = values[integral].astype(np.int64).astype(str)
    return text


def _convert_value(value: Any, kind: str, column: str, parameter: str, round_integers: bool = False) -> Any:
    """Convert a plain scalar to the type of a column of ``kind``; None stays None (a missing value).

    ``round_integers`` rounds a fractional number for an integer column half
    to even (2.5 -> 2, 3.5 -> 4) instead of raising.
    """
    if value is None:
        return None
    if kind == "text":
        if isinstance(value, str):
            return value
        if isinstance(value, bool):
            raise TypeError(f"{parameter}={value!r} does not fit text column {column!r}; pass a str")
        if isinstance(value, int):
            return str(value)
        return _format_numbers(np.array([value]))[0]
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        raise TypeError(f"{parameter}={value!r} does not fit boolean column {column!r}; pass True or False")
    if isinstance(value, (str, bool)):
        raise TypeError(f"{parameter}={value!r} does not fit {kind} column {column!r}; pass a number")
    if kind == "float":
        return float(value)
    if isinstance(value, int):
        return value
    if value.is_integer():
        return int(value)
    if round_integers:
        return int(round(value))
    raise ValueError(f"{parameter}={value!r} does not fit integer column {column!r}; pass a whole number")


def _write(series: pd.Series, kind: str, mask: np.ndarray, values: Any) -> pd.Series:
    """Return a copy of ``series`` with ``values`` (one scalar, or one per True in ``mask``) written where ``mask`` is True.

    ``values`` must already have the column's type (see :func:`_convert_value`);
    None or NaN writes a missing value.
    """
    result = series.copy()
    positions = np.flatnonzero(mask)
    if positions.size == 0:
        return result
    if np.ndim(values) == 0:
        array = np.empty(positions.size, dtype=object)
        array[:] = [values] * positions.size
    else:
        array = np.asarray(values, dtype=object)
    missing = pd.isna(array)

    if kind == "text":
        array[missing] = None
    elif kind == "float":
        array = np.where(missing, np.nan, array).astype(float)
    elif kind == "integer":
        if missing.any():
            if not isinstance(result.dtype, pd.api.extensions.ExtensionDtype):
                result = result.astype("Int64")
            array = pd.array(np.where(missing, None, array), dtype=result.dtype)
        else:
            array = array.astype(result.dtype.numpy_dtype if hasattr(result.dtype, "numpy_dtype") else result.dtype)
    elif kind == "boolean":
        if missing.any():
            if not isinstance(result.dtype, pd.api.extensions.ExtensionDtype):
                result = result.astype("boolean")
            array = pd.array(np.where(missing, None, array), dtype=result.dtype)
        else:
            array = array.astype(bool)
    result.iloc[positions] = array
    return result


def changed_mask(before: pd.Series, after: pd.Series) -> np.ndarray:
    """Return which cells differ; two missing values count as equal."""
    before = before.reset_index(drop=True)
    after = after.reset_index(drop=True)
    # eq gives NA where a nullable column is missing, and isin([True]) maps NA to False.
    equal = before.eq(after).isin([True]).to_numpy()
    both_missing = before.isna().to_numpy() & after.isna().to_numpy()
    return ~(equal | both_missing)


def _markers_for(markers: tuple, kind: str) -> list:
    """Return the missing-value markers that can equal a value in a column of ``kind``."""
    if kind == "text":
        return [m for m in markers if isinstance(m, str)]
    if kind == "boolean":
        return [m for m in markers if isinstance(m, bool)]
    return [m for m in markers if isinstance(m, (int, float)) and not isinstance(m, bool)]


def _function_name(function: Callable) -> str:
    module = getattr(function, "__module__", None)
    qualname = getattr(function, "__qualname__", None) or type(function).__name__
    return f"{module}.{qualname}" if module else qualname


# ---------------------------------------------------------------------------
# Operations
# ---------------------------------------------------------------------------


class Operation:
    """Base class of cleaning operations.

    Attributes
    ----------
    name : str
        Error class of the records the operation cleaned.  The default is
        built from the kind and the column, such as ``"impute_median:weight"``.
        ``"clean"`` is rejected because it means unchanged, and ``"removed"``
        is kept for :class:`Remove`.
    columns : tuple of str
        Columns the operation may change (empty for :class:`Remove`).
    removes : bool
        True only for :class:`Remove`.
    """

    name: str
    columns: tuple[str, ...]
    kind = ""
    removes = False
    # Keys of describe() besides "operation"; operation_from_dict accepts only these.
    fields: tuple = ("name",)

    def __init__(self, name: str, columns: Iterable[str]):
        self.name = _check_name(name, self.removes)
        self.columns = tuple(columns)

    @property
    def needs_fit(self) -> bool:
        """True while a statistic still has to be computed by :meth:`fit` or :meth:`fit_spark`."""
        return False

    def fit(self, values: pd.Series) -> Operation:
        """Compute the operation's statistic from a column's values and return self; a no-op unless overridden."""
        return self

    def fit_spark(self, df: Any) -> Operation:
        """Compute the operation's statistic with Spark over a whole table and return self; a no-op unless overridden."""
        return self

    def apply(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Return a new frame with the operation applied; same index, columns and, where possible, dtypes."""
        raise NotImplementedError

    def describe(self) -> dict:
        """Return a JSON-serializable description that :func:`operation_from_dict` turns back into the operation."""
        raise NotImplementedError

    def changes(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Preview the operation: one row per cell whose value would change.

        Returns a frame with columns ``row`` (the record's index label),
        ``column``, ``before`` and ``after``, ordered by row position and then
        by column.  Removal changes no cell, so :class:`Remove` returns no rows.
        """
        after = self.apply(frame)
        pieces = []
        for column in self.columns:
            positions = np.flatnonzero(changed_mask(frame[column], after[column]))
            pieces.append(
                pd.DataFrame(
                    {
                        "position": positions,
                        "row": frame.index[positions],
                        "column": column,
                        "before": frame[column].iloc[positions].astype(object).to_numpy(),
                        "after": after[column].iloc[positions].astype(object).to_numpy(),
                    }
                )
            )
        if not pieces:
            return pd.DataFrame({name: pd.Series(dtype=object) for name in CHANGES_COLUMNS})
        table = pd.concat(pieces, ignore_index=True).sort_values("position", kind="stable")
        return table[CHANGES_COLUMNS].reset_index(drop=True)

    @classmethod
    def _from_description(cls, data: dict) -> Operation:
        return cls(**data)

    def __repr__(self) -> str:
        parameters = ", ".join(f"{key}={value!r}" for key, value in self.describe().items() if key != "operation")
        return f"{type(self).__name__}({parameters})"


class Remove(Operation):
    """Remove the records from the table; no value changes.

    Parameters
    ----------
    name : str, optional
        Error class; the default ``"removed"`` is the detector's class for
        removed records.
    """

    kind = "remove"
    removes = True

    def __init__(self, name: str | None = None):
        super().__init__(REMOVED if name is None else name, ())

    def apply(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Return a copy of ``frame``; the caller removes the records."""
        _check_frame(frame, self.name)
        return frame.copy()

    def describe(self) -> dict:
        return {"operation": self.kind, "name": self.name}


class _ColumnOperation(Operation):
    """An operation that changes one column; subclasses implement :meth:`_transform`."""

    fields = ("name", "column")

    def __init__(self, column: str, name: str | None, default_name: str):
        self.column = _check_column_name(column)
        super().__init__(default_name if name is None else name, (self.column,))

    def apply(self, frame: pd.DataFrame) -> pd.DataFrame:
        _check_frame(frame, self.name)
        series = _column(frame, self.column, self.name)
        kind = _column_kind(series.dtype, self.column)
        new = self._transform(series, kind, frame)
        result = frame.copy()
        result[self.column] = new
        return result

    def _transform(self, series: pd.Series, kind: str, frame: pd.DataFrame) -> pd.Series:
        raise NotImplementedError


class Impute(_ColumnOperation):
    """Fill the missing cells of a column.

    Missing means None, NaN or pandas NA, plus the ``missing`` markers (a real
    table may write "N/A" or an empty string).  Only missing cells are written.

    Parameters
    ----------
    column : str
        Column to fill.
    strategy : {"mean", "median", "most_frequent", "constant"}, default="mean"
        Where the fill value comes from.  The first three compute a statistic
        from the column's non-missing values with :meth:`fit` (pandas) or
        :meth:`fit_spark` (a whole Spark table), which must run before
        :meth:`apply`.  "constant" writes ``value``.
    value : str, int, float or bool, optional
        Fill value; required for "constant" and rejected otherwise.
    missing : scalar or iterable of scalars, default=()
        Extra values that mean missing.  A marker is compared as it is: a str
        marker matches text cells, a number numeric cells.
    name : str, optional
        Error class; defaults to ``"impute_<strategy>:<column>"``.

    Notes
    -----
    mean and median read numbers only.  In a text column they read the cells
    whose whole text is a number (``" 12.5 "``, ``"1e3"``), ignore the others,
    and write the result back as text (``"12"``, ``"0.05"``).  In an integer
    column the result is rounded half to even (a median of 2.5 is written as
    2, one of 3.5 as 4).  most_frequent breaks ties by the smallest value:
    text order (by code point) in a text column, numeric order in a numeric
    one.  Numeric order is used there because Spark and Python format floats
    differently as text, so text order would let :meth:`fit` and
    :meth:`fit_spark` disagree.

    NOTE: Spark's ``toPandas`` turns an integer column with nulls into
    float64, so such a column is treated as float here and a mean or median
    may be written as a fraction that an int64 Arrow schema rejects.
    """

    kind = "impute"
    fields = ("name", "column", "strategy", "value", "missing", "statistic")

    def __init__(
        self,
        column: str,
        strategy: str = "mean",
        value: Any = None,
        missing: Any = (),
        name: str | None = None,
    ):
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
        value = _check_scalar(value, "value")
        if strategy == "constant" and value is None:
            raise ValueError(f"strategy='constant' needs value=, the value to write into column {column!r}")
        if strategy != "constant" and value is not None:
            raise ValueError(
                f"strategy={strategy!r} computes its fill value from column {column!r}; "
                "drop value= or use strategy='constant'"
            )
        super().__init__(column, name, f"impute_{strategy}:{column}")
        self.strategy = strategy
        self.value = value
        self.missing = self._check_markers(missing)
        self.statistic: Any = None

    @staticmethod
    def _check_markers(missing: Any) -> tuple:
        if missing is None:
            return ()
        # A single str is one marker, not a sequence of one-letter markers.
        if isinstance(missing, str) or not isinstance(missing, Iterable):
            missing = (missing,)
        markers = []
        for marker in missing:
            marker = _check_scalar(marker, "missing marker")
            if marker is not None and marker not in markers:
                markers.append(marker)
        return tuple(markers)

    @property
    def needs_fit(self) -> bool:
        return self.strategy != "constant" and self.statistic is None

    def _missing_mask(self, series: pd.Series, kind: str) -> np.ndarray:
        mask = series.isna().to_numpy()
        markers = _markers_for(self.missing, kind)
        if markers:
            mask = mask | series.isin(markers).to_numpy()
        return mask

    def fit(self, values: pd.Series | pd.DataFrame) -> Impute:
        """Compute the statistic from a column's values (a Series, or a frame with the column) and return self.

        Raises ValueError naming the column when no value is present, or for
        mean and median when no value can be read as a number.
        """
        if self.strategy == "constant":
            return self
        if isinstance(values, pd.DataFrame):
            series = _column(values, self.column, self.name)
        elif isinstance(values, pd.Series):
            series = values
        else:
            series = pd.Series(values)
        kind = _column_kind(series.dtype, self.column)
        present = series[~self._missing_mask(series, kind)]

        if self.strategy in ("mean", "median"):
            numbers = _numbers(present, kind)
            numbers = numbers[~np.isnan(numbers)]
            if numbers.size == 0:
                raise ValueError(
                    f"cannot compute the {self.strategy} of column {self.column!r}: none of its "
                    f"{len(present)} non-missing values is a number; use strategy='most_frequent' or 'constant'"
                )
            statistic = np.mean(numbers) if self.strategy == "mean" else np.median(numbers)
            self.statistic = float(statistic)
            return self

        if present.empty:
            raise ValueError(f"cannot compute the most frequent value of column {self.column!r}: every value is missing")
        counts = present.value_counts(sort=False, dropna=True)
        tied = pd.Series(counts.index[counts.to_numpy() == counts.max()], dtype=object)
        if kind == "text":
            order = tied.astype(str).sort_values(kind="stable").index
            chosen = tied[order[0]]
        else:
            chosen = tied.min()
        self.statistic = _plain(chosen)
        return self

    def fit_spark(self, df: Any) -> Impute:
        """Compute the statistic with Spark over a whole table (a pyspark DataFrame) and return self.

        Aggregates in Spark (mean, median, or a count per value for
        most_frequent), so only one row reaches the driver.  Cells are read
        as in :meth:`fit`, and both return the same value, up to float
        rounding for mean and median.
        """
        if self.strategy == "constant":
            return self
        from pyspark.sql import functions as F

        if self.column not in df.columns:
            raise ValueError(
                f"operation {self.name!r} needs column {self.column!r}, which the Spark table does not have; "
                f"its columns are {df.columns}"
            )
        data_type = df.schema[self.column].dataType
        kind = _spark_kind(data_type, self.column)
        column = F.col("`" + self.column.replace("`", "``") + "`")

        present = column.isNotNull()
        if data_type.typeName() in ("float", "double"):
            present = present & ~F.isnan(column)
        markers = _markers_for(self.missing, kind)
        if markers:
            present = present & ~column.isin(*markers)
        values = df.where(present)

        if self.strategy in ("mean", "median"):
            if kind == "text":
                number = F.regexp_extract(column, NUMBER_TEXT, 1).try_cast("double")
            elif kind in ("integer", "float"):
                number = column.cast("double")
            else:
                number = F.lit(None).cast("double")
            finite = number.isNotNull() & ~F.isnan(number) & (F.abs(number) != F.lit(float("inf")))
            aggregate = F.mean if self.strategy == "mean" else F.median
            row = (
                values.select(number.alias("number"))
                .where(finite)
                .agg(F.count("number").alias("count"), aggregate("number").alias("statistic"))
                .first()
            )
            if not row["count"]:
                raise ValueError(
                    f"cannot compute the {self.strategy} of column {self.column!r}: none of its non-missing "
                    "values is a number; use strategy='most_frequent' or 'constant'"
                )
            self.statistic = float(row["statistic"])
            return self

        # Spark's default collation, UTF8_BINARY, orders strings by their
        # UTF-8 bytes, which is code point order, the order fit() uses.
        row = (
            values.select(column.alias("value"))
            .groupBy("value")
            .count()
            .orderBy(F.desc("count"), F.asc("value"))
            .first()
        )
        if row is None:
            raise ValueError(f"cannot compute the most frequent value of column {self.column!r}: every value is missing")
        self.statistic = _plain(row["value"])
        return self

    def _transform(self, series, kind, frame):
        if self.needs_fit:
            raise NotFittedError(
                f"operation {self.name!r} fills column {self.column!r} with its {self.strategy}, which is not "
                "computed yet; call fit(values) or fit_spark(table) before apply"
            )
        if self.strategy == "constant":
            fill = _convert_value(self.value, kind, self.column, "value")
        else:
            fill = _convert_value(
                self.statistic,
                kind,
                self.column,
                f"{self.strategy} statistic",
                round_integers=self.strategy in ("mean", "median"),
            )
        return _write(series, kind, self._missing_mask(series, kind), fill)

    def describe(self) -> dict:
        return {
            "operation": self.kind,
            "name": self.name,
            "column": self.column,
            "strategy": self.strategy,
            "value": self.value,
            "missing": list(self.missing),
            "statistic": _plain(self.statistic),
        }

    @classmethod
    def _from_description(cls, data):
        data = dict(data)
        statistic = _check_scalar(data.pop("statistic", None), "statistic")
        operation = cls(**data)
        if statistic is not None and operation.strategy == "constant":
            raise ValueError("a constant Impute has no statistic; drop 'statistic' from the description")
        operation.statistic = statistic
        return operation


def _spark_kind(data_type: Any, column: str) -> str:
    name = data_type.typeName()
    if name in ("string", "varchar", "char"):
        return "text"
    if name in ("byte", "short", "integer", "long"):
        return "integer"
    if name in ("float", "double", "decimal"):
        return "float"
    if name == "boolean":
        return "boolean"
    raise TypeError(
        f"column {column!r} has Spark type {data_type.simpleString()}; Impute supports string, integral, "
        "floating point, decimal and boolean columns"
    )


class SetValue(_ColumnOperation):
    """Write one value into a column.

    Parameters
    ----------
    column : str
        Column to write.
    value : str, int, float, bool or None
        Value to write, converted to the column's type (a number becomes text
        in a text column).  None writes a missing value.
    where : callable or scalar, optional
        Rows to write.  None selects every row.  A callable gets a copy of the
        frame and returns a boolean mask (a Series with the frame's index, or
        an array with one entry per row).  A scalar selects the rows whose
        value in ``column`` equals it exactly, without type conversion, so
        ``where=12`` does not match the text ``"12"``.  Missing cells are
        filled by :class:`Impute`, so NaN is rejected here.
    name : str, optional
        Error class; defaults to ``"set_value:<column>"``.
    """

    kind = "set_value"
    fields = ("name", "column", "value", "where")

    def __init__(self, column: str, value: Any, where: Any = None, name: str | None = None):
        super().__init__(column, name, f"set_value:{column}")
        self.value = _check_scalar(value, "value")
        if where is None or callable(where):
            self.where = where
        else:
            where = _check_scalar(where, "where")
            if where is None:
                raise ValueError(
                    f"where=NaN matches no cell of column {column!r}; to fill missing cells use "
                    "Impute(column, strategy='constant', value=...)"
                )
            self.where = where

    def _mask(self, series: pd.Series, frame: pd.DataFrame) -> np.ndarray:
        if self.where is None:
            return np.ones(len(series), dtype=bool)
        if not callable(self.where):
            return series.eq(self.where).isin([True]).to_numpy()
        selected = self.where(frame.copy())
        if isinstance(selected, pd.Series):
            if not selected.index.equals(frame.index):
                raise ValueError(
                    f"the where function of operation {self.name!r} returned a Series whose index differs from "
                    "the frame's; return a mask with the frame's index"
                )
            if not pd.api.types.is_bool_dtype(selected.dtype):
                raise TypeError(
                    f"the where function of operation {self.name!r} returned a Series of dtype {selected.dtype}; "
                    "return a boolean mask"
                )
            return selected.to_numpy(dtype=bool, na_value=False)
        array = np.asarray(selected)
        if array.dtype != bool or array.shape != (len(frame),):
            raise TypeError(
                f"the where function of operation {self.name!r} returned {type(selected).__name__} with dtype "
                f"{array.dtype} and shape {array.shape}; return a boolean mask with one entry per row "
                f"({len(frame)})"
            )
        return array

    def _transform(self, series, kind, frame):
        value = _convert_value(self.value, kind, self.column, "value")
        return _write(series, kind, self._mask(series, frame), value)

    def describe(self) -> dict:
        if self.where is None:
            where = None
        elif callable(self.where):
            where = {"function": _function_name(self.where)}
        else:
            where = {"equals": self.where}
        return {"operation": self.kind, "name": self.name, "column": self.column, "value": self.value, "where": where}

    @classmethod
    def _from_description(cls, data):
        data = dict(data)
        where = data.pop("where", None)
        if isinstance(where, Mapping):
            if "function" in where:
                raise ValueError(
                    f"operation {data.get('name')!r} selects rows with the function {where['function']}, which a "
                    "description does not store; create it again with SetValue(column, value, where=function)"
                )
            if set(where) != {"equals"}:
                raise ValueError(f"where must be None, {{'equals': value}} or {{'function': name}}, got {where!r}")
            where = where["equals"]
        elif where is not None:
            raise ValueError(f"where must be None, {{'equals': value}} or {{'function': name}}, got {where!r}")
        return cls(where=where, **data)


class MapValues(_ColumnOperation):
    """Replace values by a lookup table; values not in the table stay unchanged.

    Parameters
    ----------
    column : str
        Column to rewrite.
    mapping : dict or iterable of (key, value) pairs
        Keys are compared with the column's values exactly, without type
        conversion: the key 12 does not match the text ``"12"``, although it
        matches 12.0 in a float column.  Values are converted to the column's
        type and None writes a missing value.  Missing cells are filled by
        :class:`Impute`, so a None or NaN key is rejected.
    name : str, optional
        Error class; defaults to ``"map_values:<column>"``.
    """

    kind = "map_values"
    fields = ("name", "column", "mapping")

    def __init__(self, column: str, mapping: Mapping | Iterable, name: str | None = None):
        super().__init__(column, name, f"map_values:{column}")
        pairs = mapping.items() if isinstance(mapping, Mapping) else mapping
        table: dict = {}
        for pair in pairs:
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise TypeError(f"mapping must be a dict or a list of (key, value) pairs, got the entry {pair!r}")
            key = _check_scalar(pair[0], "mapping key")
            if key is None:
                raise ValueError(
                    f"mapping key {pair[0]!r} is a missing value; fill missing cells of column {column!r} with Impute"
                )
            if key in table:
                raise ValueError(f"mapping key {key!r} appears twice")
            table[key] = _check_scalar(pair[1], f"mapping[{key!r}]")
        if not table:
            raise ValueError(f"mapping for column {column!r} is empty; give at least one key and value")
        self.mapping = table

    def _transform(self, series, kind, frame):
        mask = series.isin(list(self.mapping)).to_numpy()
        converted = {
            key: _convert_value(value, kind, self.column, f"mapping[{key!r}]") for key, value in self.mapping.items()
        }
        new = series[mask].map(converted).to_numpy(dtype=object)
        return _write(series, kind, mask, new)

    def describe(self) -> dict:
        # Pairs instead of a JSON object, because JSON object keys are always
        # text and would turn the key 12 into "12".
        return {
            "operation": self.kind,
            "name": self.name,
            "column": self.column,
            "mapping": [[key, value] for key, value in self.mapping.items()],
        }


class RegexReplace(_ColumnOperation):
    """Rewrite text with a regular expression.

    Uses Python ``re`` syntax through ``pandas.Series.str.replace(regex=True)``;
    ``replacement`` may refer to groups (``\\1``, ``\\g<name>``).  Only str
    cells change, so numeric columns and missing cells are left alone.

    Parameters
    ----------
    column : str
        Column to rewrite.
    pattern : str
        Regular expression; an invalid one raises ValueError here.
    replacement : str
        Replacement text.
    name : str, optional
        Error class; defaults to ``"regex_replace:<column>"``.
    """

    kind = "regex_replace"
    fields = ("name", "column", "pattern", "replacement")

    def __init__(self, column: str, pattern: str, replacement: str, name: str | None = None):
        super().__init__(column, name, f"regex_replace:{column}")
        if not isinstance(pattern, str):
            raise TypeError(f"pattern must be a str, got {type(pattern).__name__} {pattern!r}")
        if not isinstance(replacement, str):
            raise TypeError(f"replacement must be a str, got {type(replacement).__name__} {replacement!r}")
        try:
            compiled = re.compile(pattern)
        except re.error as error:
            raise ValueError(f"invalid regular expression {pattern!r} for column {column!r}: {error}") from None
        # sub() parses the replacement even when nothing matches, so a bad
        # group reference fails here instead of at the first match.
        try:
            compiled.sub(replacement, "")
        except (re.error, IndexError) as error:
            raise ValueError(
                f"invalid replacement {replacement!r} for pattern {pattern!r}: {error}"
            ) from None
        self.pattern = pattern
        self.replacement = replacement

    def _transform(self, series, kind, frame):
        mask = _text_mask(series)
        if not mask.any():
            return series.copy()
        replaced = series[mask].astype(object).str.replace(self.pattern, self.replacement, regex=True)
        return _write(series, "text", mask, replaced.to_numpy(dtype=object))

    def describe(self) -> dict:
        return {
            "operation": self.kind,
            "name": self.name,
            "column": self.column,
            "pattern": self.pattern,
            "replacement": self.replacement,
        }


class Clip(_ColumnOperation):
    """Limit the numbers in a column to ``[lower, upper]``.

    In a numeric column every number is clipped.  An integer column is
    clipped to the whole numbers within the bounds (``lower`` rounded up,
    ``upper`` rounded down) so it stays integer.  In a text column only cells
    whose whole text is a number are clipped, and a clipped value is written
    back as text, while other text and numbers within the bounds stay as they
    were.

    Parameters
    ----------
    column : str
        Column to clip.
    lower, upper : float, optional
        Bounds; give at least one.  ``lower`` must not exceed ``upper``.
    name : str, optional
        Error class; defaults to ``"clip:<column>"``.
    """

    kind = "clip"
    fields = ("name", "column", "lower", "upper")

    def __init__(self, column: str, lower: float | None = None, upper: float | None = None, name: str | None = None):
        super().__init__(column, name, f"clip:{column}")
        lower = _check_number(lower, "lower")
        upper = _check_number(upper, "upper")
        if lower is None and upper is None:
            raise ValueError(f"Clip on column {column!r} needs lower=, upper= or both")
        if lower is not None and upper is not None and lower > upper:
            raise ValueError(f"Clip on column {column!r} has lower={lower!r} above upper={upper!r}; swap them")
        self.lower = lower
        self.upper = upper

    def _transform(self, series, kind, frame):
        if kind == "boolean":
            raise TypeError(f"Clip needs a numeric or text column, but column {self.column!r} is boolean")
        if kind in ("integer", "float"):
            lower, upper = self.lower, self.upper
            if kind == "integer":
                lower = None if lower is None else math.ceil(lower)
                upper = None if upper is None else math.floor(upper)
                if lower is not None and upper is not None and lower > upper:
                    raise ValueError(
                        f"no whole number lies between lower={self.lower!r} and upper={self.upper!r}, "
                        f"so integer column {self.column!r} cannot be clipped"
                    )
            return series.clip(lower=lower, upper=upper)

        numbers = _text_numbers(series)
        clipped = np.clip(
            numbers,
            -np.inf if self.lower is None else self.lower,
            np.inf if self.upper is None else self.upper,
        )
        mask = ~np.isnan(numbers) & (clipped != numbers)
        return _write(series, "text", mask, _format_numbers(clipped[mask]))

    def describe(self) -> dict:
        return {
            "operation": self.kind,
            "name": self.name,
            "column": self.column,
            "lower": self.lower,
            "upper": self.upper,
        }


def _normalize_units(units: pd.Series) -> pd.Series:
    """Lowercase unit text, collapse blanks and drop trailing dots ("OZ." -> "oz")."""
    return units.str.lower().str.replace(r"\s+", " ", regex=True).str.strip().str.rstrip(".").str.strip()


class ParseNumber(_ColumnOperation):
    """Turn text such as ``"12.0 oz."``, ``"0.05%"`` or ``" 1,234.5 "`` into a number written as text.

    A cell is read as a number (commas may group thousands) followed by an
    optional unit that starts with a letter or ``"%"``.  The number is
    multiplied by the unit's factor and written back as text: ``"12"`` when
    integral, otherwise the shortest repr (``"0.05"``).  Cells that are not
    str, and numeric columns, are left unchanged.

    Parameters
    ----------
    column : str
        Text column to parse.
    units : dict of str to float, optional
        Factor per unit, such as ``{"oz": 1, "ounce": 1, "%": 0.01}``.  Unit
        text is compared case-insensitively, with runs of blanks collapsed and
        trailing dots ignored.  A cell whose unit is not in ``units`` is left
        unchanged so the analyst can review it.  Without ``units``, any unit
        text is dropped and the number is kept as it is (factor 1).
    default_unit : str, optional
        Unit of cells without one; must be a key of ``units``.  Without it
        such cells get factor 1.
    name : str, optional
        Error class; defaults to ``"parse_number:<column>"``.

    Notes
    -----
    Cells without a number (``"N/A"``, ``""``, ``"$5"``, ``"1,23"``) are left
    unchanged.
    """

    kind = "parse_number"
    fields = ("name", "column", "units", "default_unit")

    def __init__(
        self,
        column: str,
        units: Mapping[str, float] | None = None,
        default_unit: str | None = None,
        name: str | None = None,
    ):
        super().__init__(column, name, f"parse_number:{column}")
        self.units = None if units is None else self._check_units(units)
        if default_unit is None:
            self.default_unit = None
        else:
            if self.units is None:
                raise ValueError(f"default_unit={default_unit!r} needs units= with its factor")
            if not isinstance(default_unit, str):
                raise TypeError(f"default_unit must be a str, got {type(default_unit).__name__} {default_unit!r}")
            normalized = _normalize_units(pd.Series([default_unit])).iloc[0]
            if normalized not in self.units:
                raise ValueError(
                    f"default_unit={default_unit!r} is not one of the units {sorted(self.units)}; add its factor"
                )
            self.default_unit = normalized

    @staticmethod
    def _check_units(units: Any) -> dict:
        if not isinstance(units, Mapping) or not units:
            raise TypeError(f"units must be a non-empty dict of unit text to factor, got {units!r}")
        keys = list(units)
        for key in keys:
            if not isinstance(key, str):
                raise TypeError(f"unit {key!r} must be a str")
        normalized = _normalize_units(pd.Series(keys, dtype=object)).tolist()
        table: dict = {}
        for key, unit in zip(keys, normalized):
            if unit == "":
                raise ValueError(f"unit {key!r} is empty; give the factor of cells without a unit with default_unit=")
            factor = _check_number(units[key], f"factor of unit {key!r}")
            if factor is None:
                raise ValueError(f"factor of unit {key!r} is missing; give a number")
            if unit in table and table[unit] != factor:
                raise ValueError(f"units {key!r} and another spelling of {unit!r} have different factors")
            table[unit] = factor
        return table

    def _transform(self, series, kind, frame):
        mask = _text_mask(series)
        if not mask.any():
            return series.copy()
        parts = series[mask].astype(object).str.extract(QUANTITY_TEXT)
        matched = parts[0].notna().to_numpy()
        numbers = np.full(len(parts), np.nan)
        if matched.any():
            numbers[matched] = parts[0][matched].str.replace(",", "", regex=False).astype(float).to_numpy()
        units = _normalize_units(parts[1].fillna("").astype(object))
        if self.units is None:
            factors = np.ones(len(numbers))
        else:
            factors = units.map(self.units).astype(float).to_numpy()
            default = 1.0 if self.default_unit is None else self.units[self.default_unit]
            factors[(units == "").to_numpy()] = default
        values = numbers * factors
        parsed = np.isfinite(values)
        positions = np.flatnonzero(mask)[parsed]
        write = np.zeros(len(series), dtype=bool)
        write[positions] = True
        return _write(series, "text", write, _format_numbers(values[parsed]))

    def describe(self) -> dict:
        return {
            "operation": self.kind,
            "name": self.name,
            "column": self.column,
            "units": None if self.units is None else dict(self.units),
            "default_unit": self.default_unit,
        }


class Custom(Operation):
    """Apply a user function ``function(frame) -> frame``.

    The function gets a copy of the records and must return a DataFrame with
    the same index and columns.  It may change only the cells of
    ``columns``; :meth:`apply` raises when it changed another column.  A
    changed column is cast back to its input dtype when its new values allow
    it.  A description stores the function's name only, so
    :func:`operation_from_dict` cannot rebuild a Custom operation.

    Parameters
    ----------
    function : callable
        ``function(frame: pandas.DataFrame) -> pandas.DataFrame``.
    columns : str or iterable of str
        Columns the function may change.
    name : str
        Error class; required, because no default name can describe what the function does.
    """

    kind = "custom"

    def __init__(self, function: Callable[[pd.DataFrame], pd.DataFrame], columns: str | Iterable[str], name: str | None = None):
        if name is None:
            raise ValueError("Custom needs name=: the name is the error class of the records it cleans")
        if not callable(function):
            raise TypeError(f"function of custom operation {name!r} must be callable, got {type(function).__name__}")
        if isinstance(columns, str):
            columns = (columns,)
        columns = tuple(_check_column_name(column) for column in columns)
        if not columns:
            raise ValueError(f"custom operation {name!r} needs columns=, the columns its function may change")
        super().__init__(name, columns)
        self.function = function

    def apply(self, frame: pd.DataFrame) -> pd.DataFrame:
        _check_frame(frame, self.name)
        for column in self.columns:
            _column(frame, column, self.name)
        try:
            result = self.function(frame.copy())
        except Exception as error:
            error.add_note(f"raised by the function of custom operation {self.name!r}")
            raise
        if not isinstance(result, pd.DataFrame):
            raise TypeError(
                f"custom operation {self.name!r} returned {type(result).__name__}; its function must return a "
                "pandas DataFrame with the input's index and columns"
            )
        added = [c for c in result.columns if c not in frame.columns]
        dropped = [c for c in frame.columns if c not in result.columns]
        if added or dropped or len(result.columns) != len(frame.columns):
            raise ValueError(
                f"custom operation {self.name!r} changed the columns: added {added}, dropped {dropped}; "
                "return exactly the input columns"
            )
        if not result.index.equals(frame.index):
            raise ValueError(
                f"custom operation {self.name!r} changed the index; return one row per input row with the same "
                "index, and remove records with Remove"
            )

        output = frame.copy()
        for column in frame.columns:
            if column in self.columns:
                output[column] = _restore_dtype(result[column], frame[column], self.name)
            elif changed_mask(frame[column], result[column]).any():
                raise ValueError(
                    f"custom operation {self.name!r} changed column {column!r}, which is not in its columns "
                    f"{list(self.columns)}; add it to columns= or leave it unchanged"
                )
        return output

    def describe(self) -> dict:
        return {
            "operation": self.kind,
            "name": self.name,
            "columns": list(self.columns),
            "function": _function_name(self.function),
        }


def _restore_dtype(new: pd.Series, old: pd.Series, name: str) -> pd.Series:
    """Return ``new`` cast to ``old``'s dtype when its values allow it, or raise TypeError."""
    if new.dtype == old.dtype:
        return new
    column = str(old.name)
    kind = _column_kind(old.dtype, column)
    if kind == "text":
        return new.astype(old.dtype)
    problem = (
        f"custom operation {name!r} returned dtype {new.dtype} for {kind} column {column!r}; "
        f"return values of type {old.dtype}"
    )
    if kind == "boolean":
        if not pd.api.types.is_bool_dtype(new.dtype) and pd.api.types.infer_dtype(new, skipna=True) != "boolean":
            raise TypeError(problem)
        return new.astype(old.dtype if not new.isna().any() else "boolean")
    if not pd.api.types.is_numeric_dtype(new.dtype) or pd.api.types.is_bool_dtype(new.dtype):
        raise TypeError(problem)
    if kind == "float":
        return new.astype(old.dtype)
    numbers = new.to_numpy(dtype=float, na_value=np.nan)
    present = ~np.isnan(numbers)
    if not np.all(numbers[present] == np.trunc(numbers[present])):
        raise TypeError(problem)
    if present.all():
        return new.astype(old.dtype)
    return new.astype("Int64")


# ---------------------------------------------------------------------------
# Descriptions
# ---------------------------------------------------------------------------

KINDS: dict[str, type[Operation]] = {
    kind.kind: kind for kind in (Remove, Impute, SetValue, MapValues, RegexReplace, Clip, ParseNumber)
}


def operation_from_dict(data: Mapping) -> Operation:
    """Rebuild an operation from :meth:`Operation.describe`'s output.

    Raises ValueError for a :class:`Custom` description (functions are not
    stored), a SetValue with a ``where`` function, an unknown kind and
    unknown or missing keys.
    """
    if not isinstance(data, Mapping):
        raise TypeError(f"expected an operation description (dict), got {type(data).__name__}")
    kind = data.get("operation")
    if kind == Custom.kind:
        raise ValueError(
            f"custom operation {data.get('name')!r} cannot be rebuilt from its description because functions are "
            "not stored; create it again with Custom(function, columns, name)"
        )
    if kind not in KINDS:
        raise ValueError(f"unknown operation {kind!r}; expected one of {', '.join(sorted(KINDS))} or custom")
    cls = KINDS[kind]
    parameters = {key: value for key, value in data.items() if key != "operation"}
    unknown = sorted(set(parameters) - set(cls.fields))
    if unknown:
        raise ValueError(
            f"description of operation {kind!r} has unknown key(s) {unknown}; expected keys are {list(cls.fields)}"
        )
    signature = list(inspect.signature(cls.__init__).parameters.values())[1:]
    required = [p.name for p in signature if p.default is inspect.Parameter.empty]
    absent = [key for key in required if key not in parameters]
    if absent:
        raise ValueError(f"description of operation {kind!r} is missing key(s) {absent}")
    return cls._from_description(parameters)
