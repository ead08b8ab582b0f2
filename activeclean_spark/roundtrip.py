"""Manual cleaning round trip: export a batch for editing, then import and validate it.

An analyst may prefer to clean a batch of dirty records in a spreadsheet.
:func:`export_batch` writes the batch to CSV or Parquet with one extra column,
``__remove__``, which the analyst fills with yes, true, 1 or x to remove a
record.  :func:`import_batch` reads the edited file back and checks every row
against the batch and the table's Arrow schema.  It keeps the valid rows and
reports each invalid one as an :class:`ImportProblem` that names the row, the
record's key, the column and the value.

The CSV is UTF-8 with a header row, and an empty cell means a missing value.
A spreadsheet may read text that starts with ``=``, ``+``, ``-``, ``@``, a
tab or a carriage return as a formula (CSV injection).  Export therefore puts
an apostrophe in front of such text, and import removes it again.  Numbers
such as ``-5`` are left as they are.

This module needs pandas and pyarrow only.  It does not import pyspark.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

__all__ = [
    "FORMATS",
    "REMOVE_COLUMN",
    "ImportProblem",
    "ImportResult",
    "export_batch",
    "import_batch",
]

FORMATS = ("csv", "parquet")
REMOVE_COLUMN = "__remove__"

REMOVE_WORDS = frozenset({"yes", "true", "1", "x"})
KEEP_WORDS = frozenset({"", "no", "false", "0"})
BOOLEAN_WORDS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}

# Text that a spreadsheet may evaluate as a formula starts with one of these.
FORMULA_START = re.compile(r"[=+\-@\t\r]")
# Export adds one apostrophe to text that matches this, and import removes one
# from text that starts with an apostrophe and then matches it.  Covering text
# that already starts with apostrophes makes the pair exact inverses.
ESCAPED_START = re.compile(r"'*[=+\-@\t\r]")
UNESCAPED_START = re.compile(r"'+[=+\-@\t\r]")
NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
INTEGER = re.compile(r"[+-]?\d+")
FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?(inf|infinity)", re.IGNORECASE)

_ARROW_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError)


@dataclass
class ImportProblem:
    """One invalid cell or row of an imported file.

    ``key`` is the record's key as the file writes it, converted to the key
    column's type, or None when the key cell itself is empty or invalid.
    ``row`` is the row as a spreadsheet numbers it: the header is row 1,
    so the first record is row 2.
    ``column`` is the cell's column, which is the key column for a problem
    with the key.  ``value`` is the cell as the file writes it.
    """

    key: object
    row: int
    column: str | None
    value: object
    message: str

    def __str__(self) -> str:
        parts = [f"row {self.row}"]
        if self.key is not None:
            parts.append(f"id {self.key!r}")
        if self.column is not None:
            parts.append(f"column {self.column!r}")
        return f"{', '.join(parts)}: {self.message}"


@dataclass
class ImportResult:
    """Valid rows, removed keys and problems of an imported file.

    ``cleaned`` has exactly the batch's data columns, in the batch's order,
    with values of the schema's types.  A column gets the batch's pandas dtype
    when converting to it changes no value.  ``removed`` lists
    the keys marked for removal, ``problems`` the rows that were rejected,
    ``absent`` the batch's keys that no row of the file names, and ``rows``
    the row number of each valid row by key.
    """

    cleaned: pd.DataFrame
    removed: list = field(default_factory=list)
    problems: list[ImportProblem] = field(default_factory=list)
    absent: list = field(default_factory=list)
    rows: dict = field(default_factory=dict)  # key of a valid row -> its row number

    def summary(self) -> str:
        """Return a line of counts, then one line per problem, such as ``row 3, id 17, column 'abv': ...``."""
        rows = len({problem.row for problem in self.problems})
        counts = (f"{len(self.cleaned)} rows valid, {len(self.removed)} marked for removal, "
                  f"{len(self.problems)} problems in {rows} rows, {len(self.absent)} records of the batch not in "
                  "the file")
        return "\n".join([counts, *(str(problem) for problem in self.problems)])

    def __str__(self) -> str:
        return self.summary()


# ---------------------------------------------------------------------------
# Formats and argument checks
# ---------------------------------------------------------------------------


def _file_format(path: str, format: str | None) -> str:
    if format is not None:
        if not isinstance(format, str) or format.lower() not in FORMATS:
            raise ValueError(f"format must be 'csv' or 'parquet', got {format!r}")
        return format.lower()
    extension = os.path.splitext(path)[1].lower()
    if extension == ".csv":
        return "csv"
    if extension == ".parquet":
        return "parquet"
    raise ValueError(
        f"cannot tell the file format of {path!r} from its extension {extension!r}; "
        "use a .csv or .parquet file name, or pass format='csv' or format='parquet'"
    )


def _check_batch(batch, key: str) -> None:
    if not isinstance(batch, pd.DataFrame):
        raise TypeError(f"batch must be a pandas DataFrame, got {type(batch).__name__}")
    not_text = [name for name in batch.columns if not isinstance(name, str)]
    if not_text:
        raise TypeError(f"batch column names must be strings, got {not_text}; rename the columns")
    repeated = sorted(set(batch.columns[batch.columns.duplicated()]))
    if repeated:
        raise ValueError(f"batch has duplicate column name(s) {repeated}; give each column a unique name")
    if key not in batch.columns:
        raise ValueError(f"key column {key!r} not found in the batch; its columns are {list(batch.columns)}")
    if REMOVE_COLUMN in batch.columns:
        raise ValueError(
            f"batch already has a column {REMOVE_COLUMN!r}, which the file uses to mark removed records; rename it"
        )


def _check_extra_columns(batch: pd.DataFrame, key: str, extra_columns) -> list[str]:
    if isinstance(extra_columns, str):
        raise TypeError(f"extra_columns must be a list of column names, got the string {extra_columns!r}")
    extras = list(extra_columns)
    unknown = [name for name in extras if name not in batch.columns]
    if unknown:
        raise ValueError(f"extra column(s) {unknown} not found in the batch; its columns are {list(batch.columns)}")
    if key in extras:
        raise ValueError(f"key column {key!r} cannot be an extra column, because import needs it to find the records")
    return extras


# ---------------------------------------------------------------------------
# Formula neutralization
# ---------------------------------------------------------------------------


def _escape_formulas(text: pd.Series) -> pd.Series:
    """Prefix an apostrophe to text a spreadsheet may evaluate as a formula, except numbers."""
    escaped = text.str.match(ESCAPED_START, na=False) & ~text.str.fullmatch(NUMBER, na=False)
    return text.mask(escaped, "'" + text.where(escaped, ""))


def _unescape_formulas(text: pd.Series) -> pd.Series:
    """Remove the apostrophe that :func:`_escape_formulas` added."""
    escaped = text.str.match(UNESCAPED_START, na=False)
    return text.mask(escaped, text.str.slice(1))


# ---------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------


def _value_text(value) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _column_text(series: pd.Series, arrow_type: pa.DataType | None) -> np.ndarray:
    """Format a column as CSV cell text, with None for a missing value."""
    series = series.reset_index(drop=True)
    present = series.notna().to_numpy()
    values = series[present]
    dtype = series.dtype
    escape = False
    if pd.api.types.is_bool_dtype(dtype):
        text = values.map({True: "true", False: "false"})
    elif pd.api.types.is_integer_dtype(dtype):
        text = values.astype("int64" if pd.api.types.is_signed_integer_dtype(dtype) else "uint64").astype(str)
    elif pd.api.types.is_float_dtype(dtype):
        numbers = values.to_numpy(dtype=getattr(dtype, "numpy_dtype", dtype))
        integral = np.isfinite(numbers) & (numbers == np.round(numbers))
        # pandas stores an integer column with missing values as float64, which
        # would write 17 as "17.0", and import rejects that in an integer column.
        if arrow_type is not None and pa.types.is_integer(arrow_type) and integral.all():
            text = numbers.astype(np.int64).astype(str)
        else:
            text = numbers.astype(str)
    elif pd.api.types.is_datetime64_any_dtype(dtype):
        if arrow_type is not None and pa.types.is_date(arrow_type):
            text = values.dt.strftime("%Y-%m-%d")
        else:
            text = values.map(lambda stamp: stamp.isoformat())
    else:
        text = values.map(_value_text)
        escape = True
    result = pd.Series(None, index=series.index, dtype=object)
    result[present] = np.asarray(text, dtype=object)
    if escape:
        result = _escape_formulas(result)
    return result.to_numpy(dtype=object)


def _write_csv(batch: pd.DataFrame, path: str, data_columns: list[str], extras: list[str], types: dict) -> None:
    cells = {name: _column_text(batch[name], types.get(name)) for name in data_columns + extras}
    cells[REMOVE_COLUMN] = np.full(len(batch), None, dtype=object)
    frame = pd.DataFrame(cells)
    frame.columns = _escape_formulas(pd.Series(frame.columns, dtype=object)).tolist()
    frame.to_csv(path, index=False, encoding="utf-8", lineterminator="\r\n")


def _write_parquet(batch: pd.DataFrame, path: str, data_columns: list[str], extras: list[str], types: dict) -> None:
    arrays = []
    for name in data_columns + extras:
        try:
            arrays.append(pa.Array.from_pandas(batch[name], type=types.get(name)))
        except _ARROW_ERRORS as error:
            raise TypeError(
                f"column {name!r} cannot be written to Parquet ({error}); give it a single type, "
                "or export to CSV instead"
            ) from None
    arrays.append(pa.nulls(len(batch), pa.string()))
    table = pa.Table.from_arrays(arrays, names=data_columns + extras + [REMOVE_COLUMN])
    pq.write_table(table, path)


def export_batch(
    batch: pd.DataFrame,
    path: str,
    *,
    key: str,
    format: str | None = None,
    extra_columns: list[str] = (),
    schema: pa.Schema | None = None,
) -> str:
    """Write a batch of dirty records to a file that an analyst can edit.

    The file has the batch's data columns first, then the read-only
    ``extra_columns``, then an empty ``__remove__`` column.

    Parameters
    ----------
    batch : pandas.DataFrame
        Records to clean: the input columns, the key included, and possibly
        read-only columns such as a score or a predicted class.
    path : str
        File to write.
    key : str
        Key column.  Its values must be unique and not missing.
    format : {"csv", "parquet"}, optional
        File format.  By default it comes from the extension of ``path``.
    extra_columns : list of str, default=()
        Read-only columns of the batch.  They are written after the data
        columns, and import ignores them.
    schema : pyarrow.Schema, optional
        The table's Arrow schema.  When given, each data column is written in
        its schema type.  This matters for an integer column with missing
        values, which pandas stores as float64: without the schema its cells
        are written as ``17.0``, and import rejects them.

    Returns
    -------
    str
        ``path``.

    Notes
    -----
    In the CSV, an empty cell is a missing value, so an empty string in the
    batch comes back as None.  The one exception is a string column that the
    schema marks as not nullable, where import reads an empty cell as "".
    """
    path = os.fspath(path)
    file_format = _file_format(path, format)
    _check_batch(batch, key)
    keys = batch[key]
    if keys.isna().any():
        raise ValueError(f"key column {key!r} has {int(keys.isna().sum())} missing value(s); every record needs a key")
    if keys.duplicated().any():
        raise ValueError(
            f"key column {key!r} has duplicate value {keys[keys.duplicated()].tolist()[0]!r}; keys must be unique"
        )
    extras = _check_extra_columns(batch, key, extra_columns)
    if schema is not None and not isinstance(schema, pa.Schema):
        raise TypeError(f"schema must be a pyarrow.Schema, got {type(schema).__name__}")

    data_columns = [name for name in batch.columns if name not in extras]
    types = {} if schema is None else {f.name: f.type for f in schema if f.name in data_columns}
    if file_format == "csv":
        _write_csv(batch, path, data_columns, extras, types)
    else:
        _write_parquet(batch, path, data_columns, extras, types)
    return path


# ---------------------------------------------------------------------------
# Reading the edited file
# ---------------------------------------------------------------------------


def _read_csv(path: str) -> pd.DataFrame:
    """Read a CSV as text, with a default index and "" for an empty cell.

    The header is read as a data row so that pandas neither renames repeated
    names nor takes the first column as the index.
    """
    try:
        frame = pd.read_csv(
            path,
            header=None,
            dtype=str,
            keep_default_na=False,
            skip_blank_lines=False,
            encoding="utf-8-sig",
        )
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path} is empty; import needs the header row and the rows that export wrote") from None
    except UnicodeDecodeError as error:
        raise ValueError(f"{path} is not UTF-8 text ({error}); save it as CSV UTF-8") from None
    except pd.errors.ParserError as error:
        raise ValueError(f"{path} is not a valid CSV file: {error}; check the commas and quotes of that line") from None
    # A row shorter than the header gets NaN in its last cells.
    frame = frame.fillna("")

    header = _unescape_formulas(frame.iloc[0].astype(object)).tolist()
    data = frame.iloc[1:].reset_index(drop=True)
    data.columns = header
    # A spreadsheet may save trailing columns without a name or a value.
    unnamed = [position for position, name in enumerate(header) if name == ""]
    empty = [position for position in unnamed if (data.iloc[:, position] == "").all()]
    if len(empty) < len(unnamed):
        raise ValueError(
            f"{path} has a column without a name in its header (column {unnamed[0] + 1}); "
            "restore the column's name or delete the column"
        )
    data = data.drop(columns=data.columns[empty]) if empty else data
    repeated = sorted(set(data.columns[data.columns.duplicated()]))
    if repeated:
        raise ValueError(f"{path} has duplicate column(s) {repeated}; keep one column of each name")
    return data


def _read_parquet(path: str) -> pa.Table:
    try:
        table = pq.read_table(path)
    except pa.ArrowInvalid as error:
        raise ValueError(
            f"{path} is not a valid Parquet file ({error}); import needs the file that export wrote"
        ) from None
    # pandas writes a DataFrame's index as a column, and that is not an edit.
    metadata = table.schema.pandas_metadata or {}
    index_columns = [name for name in metadata.get("index_columns", []) if isinstance(name, str)]
    return table.drop_columns(index_columns) if index_columns else table


def _check_file_columns(path: str, present: list[str], data_columns: list[str], ignored: set[str]) -> None:
    missing = [name for name in data_columns if name not in present]
    unknown = [name for name in present if name not in data_columns and name not in ignored]
    if missing and len(missing) == len(data_columns):
        raise ValueError(
            f"{path} has none of the batch's columns: expected {data_columns}, found {present}; "
            "a CSV file needs the header row that export wrote"
        )
    if missing and unknown:
        raise ValueError(
            f"{path} is missing column(s) {missing} and has unknown column(s) {unknown}; "
            "a column was probably renamed, so restore its original name"
        )
    if missing:
        raise ValueError(
            f"{path} is missing column(s) {missing}, so no row can be imported; "
            "restore the columns, or export the batch again"
        )
    if unknown:
        raise ValueError(
            f"{path} has unknown column(s) {unknown}; the batch's columns are {data_columns}. "
            "Restore a renamed column's name and delete added columns"
        )


# ---------------------------------------------------------------------------
# Cell conversion
# ---------------------------------------------------------------------------


def _is_text(arrow_type: pa.DataType) -> bool:
    return pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type) or pa.types.is_string_view(arrow_type)


def _expected(field: pa.Field) -> str:
    """Describe the values that a column accepts, as advice in a message."""
    arrow_type = field.type
    if pa.types.is_integer(arrow_type):
        return "a whole number such as 12"
    if pa.types.is_floating(arrow_type):
        return "a number with a dot as the decimal separator, such as 0.05"
    if pa.types.is_boolean(arrow_type):
        return "true or false (yes, no, 1 and 0 also work)"
    if pa.types.is_date(arrow_type):
        return "a date written as YYYY-MM-DD"
    if pa.types.is_timestamp(arrow_type):
        if arrow_type.tz is None:
            return "a date and time written as YYYY-MM-DD HH:MM:SS"
        return "a date and time with its UTC offset, written as YYYY-MM-DD HH:MM:SS+00:00"
    return f"a {arrow_type} value"


def _cast_each(array: pa.Array, arrow_type: pa.DataType) -> tuple[pa.Array, np.ndarray]:
    """Cast ``array`` and return the result with a mask of the values that did not convert.

    Those values become null.
    """
    try:
        return pc.cast(array, arrow_type), np.zeros(len(array), dtype=bool)
    except _ARROW_ERRORS:
        pass
    # Only the failing column goes value by value, to find the bad cells.
    pieces, failed = [], np.zeros(len(array), dtype=bool)
    for position in range(len(array)):
        try:
            pieces.append(pc.cast(array.slice(position, 1), arrow_type))
        except _ARROW_ERRORS:
            pieces.append(pa.nulls(1, arrow_type))
            failed[position] = True
    return pa.concat_arrays(pieces) if pieces else pa.array([], type=arrow_type), failed


def _parse_text(text: pd.Series, field: pa.Field) -> tuple[pa.Array, pd.Series]:
    """Convert text cells to ``field.type``.

    Return the values, null where a cell is empty or invalid, and a message
    per cell, None where the cell is valid.  ``text`` has "" for an empty cell.
    """
    arrow_type = field.type
    messages = pd.Series(None, index=text.index, dtype=object)

    if _is_text(arrow_type):
        empty = (text == "").to_numpy()
        if not field.nullable:
            empty = np.zeros(len(text), dtype=bool)
        return pa.array(text.to_numpy(dtype=object), type=arrow_type, mask=empty), messages

    stripped = text.str.strip()
    empty = (stripped == "").to_numpy()
    if pa.types.is_boolean(arrow_type):
        parsed = stripped.str.lower().map(BOOLEAN_WORDS)
        invalid = ~empty & parsed.isna().to_numpy()
        values = pa.array(parsed.where(~(empty | invalid), None).to_numpy(dtype=object), type=arrow_type)
        messages[invalid] = [f"{value!r} is not a boolean; enter {_expected(field)}" for value in text[invalid]]
        return values, messages

    numeric = pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type)
    if pa.types.is_integer(arrow_type):
        syntax_ok = stripped.str.fullmatch(INTEGER).to_numpy() & ~empty
        # Arrow's parser rejects a leading plus sign.
        candidates = stripped.str.removeprefix("+")
    elif pa.types.is_floating(arrow_type):
        syntax_ok = stripped.str.fullmatch(FLOAT).to_numpy() & ~empty
        candidates = stripped
    else:
        # Arrow's own parser checks dates, timestamps and decimals.
        syntax_ok = ~empty
        candidates = stripped
    source = pa.array(candidates.to_numpy(dtype=object), type=pa.string(), mask=~syntax_ok)
    values, failed = _cast_each(source, arrow_type)
    if pa.types.is_floating(arrow_type):
        # Arrow reads a number beyond the type's range as infinity.
        numbers = values.to_numpy(zero_copy_only=False)
        failed |= np.isinf(numbers) & ~stripped.str.contains("inf", case=False).to_numpy()
        values = pa.array(numbers, type=arrow_type, mask=~syntax_ok | failed)

    # For a number, a cell that is written correctly but fails is out of range.
    invalid = ~empty & (~syntax_ok | (failed & (not numeric)))
    out_of_range = failed & numeric
    messages[invalid] = [
        f"{value!r} is not a valid {arrow_type}; enter {_expected(field)}" for value in text[invalid]
    ]
    messages[out_of_range] = [
        f"{value!r} is out of the range of type {arrow_type}; enter a smaller value" for value in text[out_of_range]
    ]
    return values, messages


def _convert_typed(array: pa.Array, field: pa.Field) -> tuple[pa.Array, pd.Series]:
    """Convert a typed Parquet column to ``field.type``, as :func:`_parse_text` does for text."""
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    messages = pd.Series(None, index=range(len(array)), dtype=object)
    if array.type == field.type:
        return array, messages
    if pa.types.is_null(array.type):
        return pa.nulls(len(array), field.type), messages
    if _is_text(array.type):
        text = pd.Series(array.to_pylist(), dtype=object).fillna("")
        return _parse_text(text, field)
    values, failed = _cast_each(array, field.type)
    messages[failed] = [
        f"{value!r} ({array.type} in the file) is not a valid {field.type}; enter {_expected(field)}"
        for value in array.filter(pa.array(failed)).to_pylist()
    ]
    return values, messages


def _flag_missing_required(values: pa.Array, messages: pd.Series, field: pa.Field) -> None:
    if field.nullable:
        return
    missing = values.is_null().to_numpy(zero_copy_only=False) & messages.isna().to_numpy()
    messages[missing] = f"column {field.name!r} requires a value, because the schema marks it not nullable"


def _flag_formulas(values: pa.Array, escaped: np.ndarray, originals: pd.Series, messages: pd.Series) -> None:
    """Flag text that starts like a formula and was not escaped, unless it is a number or the batch's own value."""
    text = pd.Series(values.to_pylist(), dtype=object)
    formula = text.str.match(FORMULA_START, na=False) & ~text.str.fullmatch(NUMBER, na=False)
    unchanged = text.eq(pd.Series(originals.to_numpy(), dtype=object)).to_numpy()
    flagged = formula.to_numpy() & ~escaped & ~unchanged & messages.isna().to_numpy()
    messages[flagged] = (
        "the text looks like a spreadsheet formula; type the value itself, "
        "or start the cell with an apostrophe (') to keep it as text"
    )


# ---------------------------------------------------------------------------
# Import
# ---------------------------------------------------------------------------


class _Source:
    """Uniform access to the columns of an imported CSV (text) or Parquet (typed) file."""

    def __init__(self, path: str, file_format: str):
        self.csv = file_format == "csv"
        if self.csv:
            self.frame = _read_csv(path)
            self.columns = list(self.frame.columns)
            self.rows = len(self.frame)
        else:
            self.table = _read_parquet(path)
            self.columns = list(self.table.column_names)
            self.rows = self.table.num_rows

    def raw(self, name: str) -> list:
        """Return the cells as the file writes them: text for a CSV, Python values for Parquet."""
        if self.csv:
            return self.frame[name].tolist()
        return self.table.column(name).to_pylist()

    def blank(self) -> np.ndarray:
        """Return a mask of the rows in which every cell is empty."""
        if self.csv:
            return (self.frame == "").all(axis=1).to_numpy()
        blank = np.ones(self.rows, dtype=bool)
        for column in self.table.columns:
            blank &= column.is_null().to_numpy(zero_copy_only=False)
        return blank

    def escaped(self, name: str) -> np.ndarray:
        """Return a mask of the cells whose formula-like text export escaped with an apostrophe."""
        if self.csv:
            return self.frame[name].str.match(UNESCAPED_START).to_numpy()
        return np.zeros(self.rows, dtype=bool)

    def convert(self, name: str, field: pa.Field) -> tuple[pa.Array, pd.Series]:
        if self.csv:
            return _parse_text(_unescape_formulas(self.frame[name]), field)
        return _convert_typed(self.table.column(name).combine_chunks(), field)

    def remove_words(self) -> pd.Series:
        """Return the ``__remove__`` cells as lower-case text, "" when empty or when the column is absent."""
        if REMOVE_COLUMN not in self.columns:
            return pd.Series("", index=range(self.rows), dtype=object)
        if self.csv:
            text = self.frame[REMOVE_COLUMN]
        else:
            column = self.table.column(REMOVE_COLUMN).combine_chunks()
            if pa.types.is_dictionary(column.type):
                column = column.dictionary_decode()
            text = pd.Series(pc.cast(column, pa.string()).to_pylist(), dtype=object).fillna("")
        return text.str.strip().str.lower()


def _check_import_arguments(batch, key: str, schema) -> list[str]:
    _check_batch(batch, key)
    if not isinstance(schema, pa.Schema):
        raise TypeError(f"schema must be a pyarrow.Schema, got {type(schema).__name__}")
    if key not in schema.names:
        raise ValueError(f"key column {key!r} not found in the schema; its columns are {schema.names}")
    absent = [name for name in schema.names if name not in batch.columns]
    if absent:
        raise ValueError(f"schema column(s) {absent} not found in the batch; pass the batch that was exported")
    for schema_field in schema:
        if not _is_text(schema_field.type):
            try:
                pc.cast(pa.array([], type=pa.string()), schema_field.type)
            except pa.ArrowNotImplementedError:
                raise TypeError(
                    f"column {schema_field.name!r} has type {schema_field.type}, which cannot be read from a "
                    "file cell; leave it out of the schema and the batch"
                ) from None
    return [name for name in batch.columns if name in schema.names]


def _batch_keys(batch: pd.DataFrame, key: str, key_field: pa.Field) -> pd.Index:
    """Return the batch's keys converted to the schema's key type."""
    try:
        keys = pa.Array.from_pandas(batch[key], type=key_field.type)
    except _ARROW_ERRORS:
        text = batch[key].map(_value_text).astype(object)
        keys, messages = _parse_text(text, key_field)
        if messages.notna().any():
            raise ValueError(
                f"key column {key!r} of the batch does not convert to the schema's type {key_field.type}: "
                f"{messages.dropna().iloc[0]}"
            ) from None
    index = pd.Index(keys.to_pylist(), dtype=object)
    if index.hasnans:
        raise ValueError(f"key column {key!r} of the batch has missing values; every record needs a key")
    if index.has_duplicates:
        raise ValueError(f"key column {key!r} of the batch has duplicate value {index[index.duplicated()][0]!r}")
    return index


def _match_batch_dtypes(frame: pd.DataFrame, batch: pd.DataFrame) -> pd.DataFrame:
    """Give each column the batch's dtype where that keeps every value and missing value as it is."""
    for name in frame.columns:
        target = batch[name].dtype
        # An object column would take any value, so it would hide the schema's type.
        if frame[name].dtype == target or target == object:
            continue
        try:
            converted = frame[name].astype(target)
        except (TypeError, ValueError, OverflowError):
            continue
        same_missing = (converted.isna() == frame[name].isna()).all()
        present = frame[name].notna()
        if same_missing and bool((converted[present] == frame[name][present]).all()):
            frame[name] = converted
    return frame


def _check_keys(
    source: _Source, key: str, key_field: pa.Field, batch_keys: pd.Index, rows: np.ndarray, considered: np.ndarray
) -> tuple[pa.Array, pd.Series, np.ndarray, pd.Series]:
    """Convert the key column and find the rows whose key is empty, invalid, unknown or repeated.

    Return the converted keys as an Arrow array and as a Series, a mask of the
    keys that converted, and a message per row, None where the key is usable.
    """
    raw = np.asarray(source.raw(key), dtype=object)
    values, conversion = source.convert(key, key_field)
    converted = conversion.isna().to_numpy()
    empty = values.is_null().to_numpy(zero_copy_only=False) & converted
    converted &= ~empty
    keys = pd.Series(values.to_pylist(), dtype=object)

    messages = pd.Series(None, index=keys.index, dtype=object)
    messages[empty] = f"the {key} cell is empty; restore the record's {key} from the exported file"
    invalid = ~converted & ~empty
    messages[invalid] = [
        f"{value!r} is not a valid {key}: {key} values are {key_field.type}, so restore the exported value"
        for value in raw[invalid]
    ]

    unknown = converted & considered & ~keys.isin(batch_keys).to_numpy()
    messages[unknown] = [
        f"{key} {value!r} is not in the exported batch; restore the {key} of the record you edited, or delete the row"
        for value in keys[unknown]
    ]

    candidates = converted & considered & ~unknown
    repeated = candidates & keys.where(candidates).duplicated(keep=False).to_numpy()
    rows_of_key: dict = {}
    for position in np.flatnonzero(repeated):
        rows_of_key.setdefault(keys[position], []).append(int(rows[position]))
    messages[repeated] = [
        f"{key} {value!r} appears in rows {', '.join(map(str, rows_of_key[value][:-1]))} and "
        f"{rows_of_key[value][-1]}; keep one row per record and delete the others"
        for value in keys[repeated]
    ]
    return values, keys, converted, messages


def _check_remove_column(source: _Source) -> tuple[np.ndarray, pd.Series]:
    """Return a mask of the rows marked for removal and a message per row with unknown text in ``__remove__``."""
    words = source.remove_words()
    messages = pd.Series(None, index=words.index, dtype=object)
    if REMOVE_COLUMN not in source.columns:
        return np.zeros(source.rows, dtype=bool), messages
    marked = words.isin(REMOVE_WORDS).to_numpy()
    unknown = ~marked & ~words.isin(KEEP_WORDS).to_numpy()
    messages[unknown] = [
        f"{value!r} is not understood; enter yes, true, 1 or x to remove the record, "
        "or leave the cell empty to keep it"
        for value in np.asarray(source.raw(REMOVE_COLUMN), dtype=object)[unknown]
    ]
    return marked, messages


def import_batch(
    path: str,
    batch: pd.DataFrame,
    *,
    key: str,
    schema: pa.Schema,
    format: str | None = None,
    extra_columns: list[str] = (),
) -> ImportResult:
    """Read an edited batch back, validate every row, and keep the valid ones.

    A row is rejected, with an :class:`ImportProblem` per cause, when its key
    is empty, invalid, not in the batch or repeated in the file (all copies
    are rejected).  A row is also rejected when a cell does not convert to its
    column's schema type, or when a string cell starts like a spreadsheet
    formula that export did not escape and differs from the batch's value.
    A row whose ``__remove__`` cell is yes, true, 1 or x (any case) is
    removed, and its data cells are not checked.  A row in which every cell
    is empty is skipped.

    Rows of the batch that are absent from the file are not returned, and
    their keys are listed in ``ImportResult.absent``.  A session treats them
    as not cleaned yet.

    Parameters
    ----------
    path : str
        File that :func:`export_batch` wrote and the analyst edited.
    batch : pandas.DataFrame
        The exported batch.  Its columns in ``schema`` are the data columns,
        and the others are read-only columns that import ignores.
    key : str
        Key column.
    schema : pyarrow.Schema
        The table's Arrow schema, with one field per data column.  Each cell
        is converted to its column's type.  Booleans accept true, false, yes,
        no, 1 and 0 in any case, and integers must be integer literals.
    format : {"csv", "parquet"}, optional
        File format.  By default it comes from the extension of ``path``.
    extra_columns : list of str, default=()
        More read-only column names that the file may contain.

    Returns
    -------
    ImportResult

    Raises
    ------
    ValueError
        When the file is empty, is not valid CSV or Parquet, has no header,
        lacks a data column or has a column that the batch does not have.
    """
    path = os.fspath(path)
    file_format = _file_format(path, format)
    data_columns = _check_import_arguments(batch, key, schema)
    if isinstance(extra_columns, str):
        raise TypeError(f"extra_columns must be a list of column names, got the string {extra_columns!r}")
    key_field = schema.field(key)
    batch_keys = _batch_keys(batch, key, key_field)

    source = _Source(path, file_format)
    ignored = {name for name in batch.columns if name not in data_columns} | set(extra_columns) | {REMOVE_COLUMN}
    _check_file_columns(path, source.columns, data_columns, ignored)
    # Numbered as a spreadsheet shows them, below the header in row 1.
    rows = np.arange(2, source.rows + 2)
    considered = ~source.blank()

    key_values, keys, key_converted, key_messages = _check_keys(source, key, key_field, batch_keys, rows, considered)
    key_ok = key_messages.isna().to_numpy() & considered
    marked, remove_messages = _check_remove_column(source)

    problems = []
    rejected = np.zeros(source.rows, dtype=bool)

    def collect(column: str, messages: pd.Series, checked: np.ndarray) -> None:
        nonlocal rejected
        flagged = messages.notna().to_numpy() & checked
        values = source.raw(column)
        for position in np.flatnonzero(flagged):
            record_key = keys[position] if key_converted[position] else None
            problem = ImportProblem(record_key, int(rows[position]), column, values[position], messages[position])
            problems.append(problem)
        rejected |= flagged

    collect(key, key_messages, considered)
    if REMOVE_COLUMN in source.columns:
        collect(REMOVE_COLUMN, remove_messages, considered)

    arrays = {key: key_values}
    unmarked = considered & ~marked
    for name in data_columns:
        if name == key:
            continue
        column_field = schema.field(name)
        values, messages = source.convert(name, column_field)
        _flag_missing_required(values, messages, column_field)
        if _is_text(column_field.type):
            originals = pd.Series(batch[name].to_numpy(), index=batch_keys).reindex(keys.where(key_ok))
            _flag_formulas(values, source.escaped(name), originals, messages)
        collect(name, messages, unmarked)
        arrays[name] = values

    column_rank = {name: rank for rank, name in enumerate([key, *data_columns, REMOVE_COLUMN])}
    problems.sort(key=lambda problem: (problem.row, column_rank[problem.column]))

    kept = key_ok & ~marked & ~rejected
    cleaned = pa.Table.from_arrays(
        [arrays[name].filter(pa.array(kept)) for name in data_columns],
        schema=pa.schema([schema.field(name) for name in data_columns]),
    ).to_pandas()
    seen = set(keys[key_converted & considered].tolist())
    return ImportResult(
        cleaned=_match_batch_dtypes(cleaned, batch),
        removed=keys[marked & key_ok].tolist(),
        problems=problems,
        absent=[value for value in batch_keys if value not in seen],
        rows=dict(zip(keys[kept].tolist(), rows[kept].tolist())),
    )
