"""Tests of the manual cleaning round trip: export a batch, edit the file, import it back."""

from __future__ import annotations

import csv
import datetime
import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from conftest import SHARED_DATA

from activeclean_spark.roundtrip import REMOVE_COLUMN, ImportResult, export_batch, import_batch

SCHEMA = pa.schema(
    [("id", pa.int64()), ("name", pa.string()), ("abv", pa.float64()), ("ibu", pa.int64()), ("ok", pa.bool_())]
)
FORMULAS = ["=1+2", "+cmd", "@SUM(A1)", "-2+3", "\t=x"]


def _batch() -> pd.DataFrame:
    """Return seven records; row n of the exported file is id 10 + n."""
    return pd.DataFrame(
        {
            "id": np.arange(11, 18, dtype=np.int64),
            "name": FORMULAS + ["plain", "-5"],
            "abv": [0.05, -0.5, 0.071, 1e-5, 0.1, np.nan, -2.0],
            "ibu": np.array([10, -20, 30, 40, 50, 60, 70], dtype=np.int64),
            "ok": [True, False, True, True, False, True, False],
        }
    )


def _read_rows(path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as file:
        return list(csv.reader(file))


def _write_rows(path, rows: list[list[str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as file:
        csv.writer(file, lineterminator="\r\n").writerows(rows)


def _edit(path, edits: dict) -> None:
    """Set cells of an exported CSV: ``edits`` maps (data row, column name) to the new text."""
    rows = _read_rows(path)
    header = rows[0]
    for (row, column), text in edits.items():
        rows[row][header.index(column)] = text
    _write_rows(path, rows)


def _exported(tmp_path, name="batch.csv", **options):
    return export_batch(_batch(), str(tmp_path / name), key="id", **options)


def _import(path, **options) -> ImportResult:
    return import_batch(path, _batch(), key="id", schema=SCHEMA, **options)


def _problem_cells(result: ImportResult) -> list[tuple]:
    return [(problem.row, problem.key, problem.column) for problem in result.problems]


# ---------------------------------------------------------------------------
# Unedited round trip
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["batch.csv", "batch.parquet"])
def test_round_trip_unchanged(tmp_path, name):
    result = _import(_exported(tmp_path, name))
    pd.testing.assert_frame_equal(result.cleaned, _batch())
    assert result.problems == []
    assert result.removed == []
    assert result.absent == []


def test_csv_header_and_remove_column(tmp_path):
    rows = _read_rows(_exported(tmp_path))
    assert rows[0] == ["id", "name", "abv", "ibu", "ok", REMOVE_COLUMN]
    assert [row[-1] for row in rows[1:]] == [""] * 7


def test_csv_missing_value_is_empty_cell(tmp_path):
    rows = _read_rows(_exported(tmp_path))
    assert rows[6][2] == ""


def test_format_argument_overrides_extension(tmp_path):
    path = export_batch(_batch(), str(tmp_path / "batch.txt"), key="id", format="parquet")
    with open(path, "rb") as file:
        assert file.read(4) == b"PAR1"
    pd.testing.assert_frame_equal(_import(path, format="parquet").cleaned, _batch())


# ---------------------------------------------------------------------------
# Formula neutralization
# ---------------------------------------------------------------------------


def test_csv_escapes_formulas(tmp_path):
    with open(_exported(tmp_path), "rb") as file:
        content = file.read()
    for text in FORMULAS:
        assert b"'" + text.encode() in content, text


def test_csv_leaves_negative_numbers(tmp_path):
    rows = _read_rows(_exported(tmp_path))
    assert rows[2][2] == "-0.5"
    assert rows[2][3] == "-20"
    assert rows[7][1] == "-5"
    assert rows[7][2] == "-2.0"


def test_import_restores_formula_text(tmp_path):
    result = _import(_exported(tmp_path))
    assert result.cleaned["name"].tolist()[:5] == FORMULAS


def test_apostrophe_text_round_trip(tmp_path):
    batch = _batch()
    batch.loc[5, "name"] = "'=quoted"
    path = export_batch(batch, str(tmp_path / "batch.csv"), key="id")
    assert _read_rows(path)[6][1] == "''=quoted"
    result = import_batch(path, batch, key="id", schema=SCHEMA)
    assert result.cleaned.loc[5, "name"] == "'=quoted"


def test_line_breaks_and_quotes_round_trip(tmp_path):
    batch = _batch()
    batch.loc[5, "name"] = "\r=carriage"
    batch.loc[6, "name"] = 'a, "quoted"\nsecond line'
    path = export_batch(batch, str(tmp_path / "batch.csv"), key="id")
    result = import_batch(path, batch, key="id", schema=SCHEMA)
    assert result.problems == []
    pd.testing.assert_frame_equal(result.cleaned, batch)


def test_header_formula_escaped(tmp_path):
    batch = _batch().rename(columns={"name": "=name"})
    schema = pa.schema([field.with_name("=name") if field.name == "name" else field for field in SCHEMA])
    path = export_batch(batch, str(tmp_path / "batch.csv"), key="id")
    assert _read_rows(path)[0][1] == "'=name"
    result = import_batch(path, batch, key="id", schema=schema)
    pd.testing.assert_frame_equal(result.cleaned, batch)


def test_typed_formula_rejected(tmp_path):
    path = _exported(tmp_path)
    _edit(path, {(6, "name"): "=HYPERLINK(\"http://x\")"})
    result = _import(path)
    assert _problem_cells(result) == [(7, 16, "name")]
    assert "spreadsheet formula" in result.problems[0].message
    assert 16 not in result.cleaned["id"].tolist()
    assert len(result.cleaned) == 6


def test_typed_number_with_sign_accepted(tmp_path):
    path = _exported(tmp_path)
    _edit(path, {(6, "name"): "-7.5"})
    result = _import(path)
    assert result.problems == []
    assert result.cleaned.loc[5, "name"] == "-7.5"


def test_typed_apostrophe_keeps_formula_text(tmp_path):
    path = _exported(tmp_path)
    _edit(path, {(6, "name"): "'=literal"})
    result = _import(path)
    assert result.problems == []
    assert result.cleaned.loc[5, "name"] == "=literal"


# ---------------------------------------------------------------------------
# Keys
# ---------------------------------------------------------------------------


def test_unknown_key_rejected(tmp_path):
    path = _exported(tmp_path)
    _edit(path, {(2, "id"): "99"})
    result = _import(path)
    assert _problem_cells(result) == [(3, 99, "id")]
    assert "not in the exported batch" in result.problems[0].message
    assert result.cleaned["id"].tolist() == [11, 13, 14, 15, 16, 17]
    assert result.absent == [12]


def test_empty_key_rejected(tmp_path):
    path = _exported(tmp_path)
    _edit(path, {(3, "id"): ""})
    result = _import(path)
    assert _problem_cells(result) == [(4, None, "id")]
    assert "id cell is empty" in result.problems[0].message
    assert len(result.cleaned) == 6


def test_duplicate_keys_rejected(tmp_path):
    path = _exported(tmp_path)
    rows = _read_rows(path)
    _write_rows(path, rows + [rows[4]])
    result = _import(path)
    assert _problem_cells(result) == [(5, 14, "id"), (9, 14, "id")]
    assert "appears in rows 5 and 9" in result.problems[0].message
    assert 14 not in result.cleaned["id"].tolist()
    assert len(result.cleaned) == 6


@pytest.mark.parametrize("text", ["17.0", "seventeen", "1e1"])
def test_key_must_be_integer_literal(tmp_path, text):
    path = _exported(tmp_path)
    _edit(path, {(7, "id"): text})
    result = _import(path)
    assert _problem_cells(result) == [(8, None, "id")]
    assert result.problems[0].value == text
    assert "int64" in result.problems[0].message


def test_string_batch_keys_match_integer_schema(tmp_path):
    batch = _batch().astype({"id": str})
    path = export_batch(batch, str(tmp_path / "batch.csv"), key="id")
    result = import_batch(path, batch, key="id", schema=SCHEMA)
    assert result.problems == []
    assert result.cleaned["id"].dtype == np.int64
    assert result.cleaned["id"].tolist() == list(range(11, 18))


# ---------------------------------------------------------------------------
# Whole-file errors
# ---------------------------------------------------------------------------


def test_missing_column_raises(tmp_path):
    path = _exported(tmp_path)
    rows = [row[:2] + row[3:] for row in _read_rows(path)]
    _write_rows(path, rows)
    with pytest.raises(ValueError, match=r"missing column\(s\) \['abv'\]"):
        _import(path)


def test_extra_column_raises(tmp_path):
    path = _exported(tmp_path)
    rows = _read_rows(path)
    _write_rows(path, [rows[0] + ["note"]] + [row + [""] for row in rows[1:]])
    with pytest.raises(ValueError, match=r"unknown column\(s\) \['note'\]"):
        _import(path)


def test_renamed_column_raises(tmp_path):
    path = _exported(tmp_path)
    rows = _read_rows(path)
    rows[0][2] = "ABV"
    _write_rows(path, rows)
    with pytest.raises(ValueError, match=r"missing column\(s\) \['abv'\] and has unknown column\(s\) \['ABV'\]"):
        _import(path)


def test_empty_file_raises(tmp_path):
    path = tmp_path / "batch.csv"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match=f"{path} is empty"):
        _import(str(path))


def test_file_without_header_raises(tmp_path):
    path = _exported(tmp_path)
    _write_rows(path, _read_rows(path)[1:])
    with pytest.raises(ValueError, match="none of the batch's columns"):
        _import(path)


def test_not_parquet_raises(tmp_path):
    path = tmp_path / "batch.parquet"
    path.write_text("id,name\n11,x\n")
    with pytest.raises(ValueError, match=f"{path} is not a valid Parquet file"):
        _import(str(path))


def test_not_utf8_raises(tmp_path):
    path = _exported(tmp_path)
    with open(path, "ab") as file:
        file.write("18,Garcé,0.1,1,true,\n".encode("latin-1"))
    with pytest.raises(ValueError, match="save it as CSV UTF-8"):
        _import(path)


@pytest.mark.parametrize("name", ["batch.xlsx", "batch"])
def test_export_unsupported_extension(tmp_path, name):
    with pytest.raises(ValueError, match=r"use a \.csv or \.parquet file name"):
        _exported(tmp_path, name)


def test_import_unsupported_extension(tmp_path):
    with pytest.raises(ValueError, match="batch.json"):
        _import(str(tmp_path / "batch.json"))


def test_unknown_format_argument(tmp_path):
    with pytest.raises(ValueError, match="format must be 'csv' or 'parquet', got 'xlsx'"):
        _exported(tmp_path, format="xlsx")


def test_export_duplicate_keys_raises(tmp_path):
    batch = _batch()
    batch.loc[1, "id"] = 11
    with pytest.raises(ValueError, match="duplicate value 11"):
        export_batch(batch, str(tmp_path / "batch.csv"), key="id")


def test_export_unknown_extra_column_raises(tmp_path):
    with pytest.raises(ValueError, match=r"extra column\(s\) \['score'\] not found"):
        _exported(tmp_path, extra_columns=["score"])


# ---------------------------------------------------------------------------
# Cell types
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "column, text, expected",
    [
        ("ibu", "abc", "int64"),
        ("ibu", "12.5", "int64"),
        ("abv", "0,5", "double"),
        ("ok", "maybe", "true or false"),
    ],
)
def test_invalid_cell_rejected(tmp_path, column, text, expected):
    path = _exported(tmp_path)
    _edit(path, {(2, column): text})
    result = _import(path)
    assert _problem_cells(result) == [(3, 12, column)]
    assert result.problems[0].value == text
    assert expected in result.problems[0].message
    assert result.cleaned["id"].tolist() == [11, 13, 14, 15, 16, 17]


def test_problems_of_one_row_all_reported(tmp_path):
    path = _exported(tmp_path)
    _edit(path, {(2, "ibu"): "abc", (2, "ok"): "maybe"})
    assert _problem_cells(_import(path)) == [(3, 12, "ibu"), (3, 12, "ok")]


def test_integer_out_of_range_rejected(tmp_path):
    path = _exported(tmp_path)
    _edit(path, {(2, "ibu"): "99999999999999999999"})
    result = _import(path)
    assert _problem_cells(result) == [(3, 12, "ibu")]
    assert "out of the range" in result.problems[0].message


def test_cells_converted(tmp_path):
    path = _exported(tmp_path)
    _edit(path, {(1, "ibu"): "+12", (1, "abv"): " 0.25 ", (1, "ok"): "No", (2, "ok"): "YES", (3, "ok"): "0"})
    cleaned = _import(path).cleaned
    assert cleaned.loc[0, "ibu"] == 12
    assert cleaned.loc[0, "abv"] == 0.25
    assert cleaned["ok"].tolist()[:3] == [False, True, False]


def test_emptied_cell_becomes_missing(tmp_path):
    path = _exported(tmp_path)
    _edit(path, {(1, "name"): "", (1, "ok"): ""})
    cleaned = _import(path).cleaned
    assert cleaned.loc[0, "name"] is None
    assert cleaned.loc[0, "ok"] is None


def test_not_nullable_column_requires_value(tmp_path):
    schema = SCHEMA.set(SCHEMA.get_field_index("ibu"), pa.field("ibu", pa.int64(), nullable=False))
    path = _exported(tmp_path)
    _edit(path, {(4, "ibu"): ""})
    result = import_batch(path, _batch(), key="id", schema=schema)
    assert _problem_cells(result) == [(5, 14, "ibu")]
    assert "requires a value" in result.problems[0].message


def test_not_nullable_string_keeps_empty_text(tmp_path):
    schema = SCHEMA.set(SCHEMA.get_field_index("name"), pa.field("name", pa.string(), nullable=False))
    batch = _batch()
    batch.loc[5, "name"] = ""
    path = export_batch(batch, str(tmp_path / "batch.csv"), key="id")
    result = import_batch(path, batch, key="id", schema=schema)
    pd.testing.assert_frame_equal(result.cleaned, batch)


def test_integer_column_with_missing_values(tmp_path):
    batch = _batch()
    batch["ibu"] = batch["ibu"].astype(float)
    batch.loc[2, "ibu"] = np.nan
    path = export_batch(batch, str(tmp_path / "batch.csv"), key="id", schema=SCHEMA)
    assert _read_rows(path)[1][3] == "10"
    result = import_batch(path, batch, key="id", schema=SCHEMA)
    pd.testing.assert_frame_equal(result.cleaned, batch)


def test_dates_and_timestamps_round_trip(tmp_path):
    schema = pa.schema(
        [
            ("id", pa.int64()),
            ("day", pa.date32()),
            ("at", pa.timestamp("us")),
            ("at_utc", pa.timestamp("us", "UTC")),
        ]
    )
    table = pa.table(
        {
            "id": [1, 2],
            "day": [datetime.date(2024, 2, 29), None],
            "at": [datetime.datetime(2024, 1, 5, 10, 30, 0, 123456), None],
            "at_utc": [datetime.datetime(2024, 1, 5, 23, 59), None],
        },
        schema=schema,
    )
    batch = table.to_pandas()
    path = export_batch(batch, str(tmp_path / "batch.csv"), key="id", schema=schema)
    result = import_batch(path, batch, key="id", schema=schema)
    pd.testing.assert_frame_equal(result.cleaned, batch)


def test_invalid_date_rejected(tmp_path):
    schema = pa.schema([("id", pa.int64()), ("day", pa.date32())])
    batch = pa.table({"id": [1], "day": [datetime.date(2024, 2, 29)]}, schema=schema).to_pandas()
    path = export_batch(batch, str(tmp_path / "batch.csv"), key="id")
    _edit(path, {(1, "day"): "29/02/2024"})
    result = import_batch(path, batch, key="id", schema=schema)
    assert _problem_cells(result) == [(2, 1, "day")]
    assert "YYYY-MM-DD" in result.problems[0].message


# ---------------------------------------------------------------------------
# Removal, absent rows, blank rows and read-only columns
# ---------------------------------------------------------------------------


def test_remove_column_removes(tmp_path):
    path = _exported(tmp_path)
    _edit(path, {(1, REMOVE_COLUMN): "yes", (2, REMOVE_COLUMN): "X", (3, REMOVE_COLUMN): "no"})
    result = _import(path)
    assert result.removed == [11, 12]
    assert result.cleaned["id"].tolist() == [13, 14, 15, 16, 17]
    assert result.problems == []


def test_removed_row_cells_not_checked(tmp_path):
    path = _exported(tmp_path)
    _edit(path, {(1, REMOVE_COLUMN): "TRUE", (1, "ibu"): "n/a"})
    result = _import(path)
    assert result.removed == [11]
    assert result.problems == []


def test_remove_column_unknown_text(tmp_path):
    path = _exported(tmp_path)
    _edit(path, {(2, REMOVE_COLUMN): "maybe"})
    result = _import(path)
    assert _problem_cells(result) == [(3, 12, REMOVE_COLUMN)]
    assert result.removed == []
    assert 12 not in result.cleaned["id"].tolist()


def test_removed_row_needs_valid_key(tmp_path):
    path = _exported(tmp_path)
    _edit(path, {(2, REMOVE_COLUMN): "1", (2, "id"): "99"})
    result = _import(path)
    assert result.removed == []
    assert _problem_cells(result) == [(3, 99, "id")]


def test_remove_column_in_parquet(tmp_path):
    path = _exported(tmp_path, "batch.parquet")
    frame = pd.read_parquet(path)
    frame.loc[0, REMOVE_COLUMN] = "x"
    frame.to_parquet(path)
    assert _import(path).removed == [11]


def test_deleted_remove_column_keeps_rows(tmp_path):
    path = _exported(tmp_path)
    _write_rows(path, [row[:-1] for row in _read_rows(path)])
    result = _import(path)
    assert result.removed == []
    pd.testing.assert_frame_equal(result.cleaned, _batch())


def test_absent_rows_not_returned(tmp_path):
    path = _exported(tmp_path)
    rows = _read_rows(path)
    _write_rows(path, [rows[0], rows[3], rows[5]])
    result = _import(path)
    assert result.cleaned["id"].tolist() == [13, 15]
    assert result.absent == [11, 12, 14, 16, 17]
    assert result.problems == []


def test_header_only_file_returns_nothing(tmp_path):
    path = _exported(tmp_path)
    _write_rows(path, _read_rows(path)[:1])
    result = _import(path)
    assert len(result.cleaned) == 0
    assert list(result.cleaned.columns) == list(_batch().columns)


def test_blank_rows_skipped(tmp_path):
    path = _exported(tmp_path)
    rows = _read_rows(path)
    _write_rows(path, rows[:3] + [[""] * 6] + rows[3:] + [[""] * 6])
    result = _import(path)
    assert len(result.cleaned) == 7
    assert result.problems == []


def test_row_numbers_count_blank_rows(tmp_path):
    path = _exported(tmp_path)
    rows = _read_rows(path)
    rows[2][3] = "abc"
    _write_rows(path, rows[:2] + [[""] * 6] + rows[2:])
    assert _problem_cells(_import(path)) == [(4, 12, "ibu")]


def test_byte_order_mark_accepted(tmp_path):
    path = _exported(tmp_path)
    with open(path, "rb") as file:
        content = file.read()
    with open(path, "wb") as file:
        file.write(b"\xef\xbb\xbf" + content)
    pd.testing.assert_frame_equal(_import(path).cleaned, _batch())


@pytest.mark.parametrize("name", ["batch.csv", "batch.parquet"])
def test_extra_columns_ignored(tmp_path, name):
    batch = _batch()
    batch["score"] = np.linspace(-1.0, 1.0, 7)
    batch["predicted"] = ["=bad", "a", "b", "c", "d", "e", "f"]
    path = export_batch(batch, str(tmp_path / name), key="id", extra_columns=["score", "predicted"])
    result = import_batch(path, batch, key="id", schema=SCHEMA)
    pd.testing.assert_frame_equal(result.cleaned, _batch())


def test_extra_columns_after_data(tmp_path):
    batch = _batch()
    batch.insert(1, "score", np.linspace(-1.0, 1.0, 7))
    path = export_batch(batch, str(tmp_path / "batch.csv"), key="id", extra_columns=["score"])
    assert _read_rows(path)[0] == ["id", "name", "abv", "ibu", "ok", "score", REMOVE_COLUMN]


def test_edited_extra_column_ignored(tmp_path):
    batch = _batch()
    batch["score"] = np.linspace(-1.0, 1.0, 7)
    path = export_batch(batch, str(tmp_path / "batch.csv"), key="id", extra_columns=["score"])
    _edit(path, {(1, "score"): "not a number"})
    result = import_batch(path, batch, key="id", schema=SCHEMA)
    assert result.problems == []
    assert len(result.cleaned) == 7


# ---------------------------------------------------------------------------
# Parquet edits
# ---------------------------------------------------------------------------


def test_parquet_wrong_type_rejected(tmp_path):
    path = _exported(tmp_path, "batch.parquet")
    frame = pd.read_parquet(path)
    frame["ibu"] = frame["ibu"].astype(object)
    frame.loc[1, "ibu"] = "twelve"
    frame["ibu"] = frame["ibu"].astype(str)
    frame.to_parquet(path)
    result = _import(path)
    assert _problem_cells(result) == [(3, 12, "ibu")]
    assert len(result.cleaned) == 6


def test_parquet_fraction_in_int_column(tmp_path):
    path = _exported(tmp_path, "batch.parquet")
    frame = pd.read_parquet(path)
    frame["ibu"] = frame["ibu"].astype(float)
    frame.loc[2, "ibu"] = 12.5
    frame.to_parquet(path)
    result = _import(path)
    assert _problem_cells(result) == [(4, 13, "ibu")]
    assert result.problems[0].value == 12.5


def test_parquet_typed_formula_rejected(tmp_path):
    path = _exported(tmp_path, "batch.parquet")
    frame = pd.read_parquet(path)
    frame.loc[5, "name"] = "=typed()"
    frame.to_parquet(path)
    result = _import(path)
    assert _problem_cells(result) == [(7, 16, "name")]
    assert result.cleaned["name"].tolist()[:5] == FORMULAS


# ---------------------------------------------------------------------------
# Messages
# ---------------------------------------------------------------------------


def test_summary_lines(tmp_path):
    path = _exported(tmp_path)
    _edit(path, {(3, "ibu"): "abc", (5, "id"): ""})
    lines = _import(path).summary().splitlines()
    assert len(lines) == 3
    # The row whose id was emptied names no record, so that record counts as not in the file.
    assert lines[0] == ("5 rows valid, 0 marked for removal, 2 problems in 2 rows, 1 records of the batch not in "
                        "the file")
    assert lines[1].startswith("row 4, id 13, column 'ibu': 'abc' is not a valid int64")
    assert lines[2].startswith("row 6, column 'id': the id cell is empty")


def test_str_is_summary(tmp_path):
    path = _exported(tmp_path)
    _edit(path, {(3, "ibu"): "abc"})
    result = _import(path)
    assert str(result) == result.summary()


# ---------------------------------------------------------------------------
# Real data
# ---------------------------------------------------------------------------

BEERS = os.path.join(SHARED_DATA, "raha_beers", "dirty.csv")


@pytest.mark.skipif(not os.path.exists(BEERS), reason="shared beers data not present")
def test_beers_edit_round_trip(tmp_path):
    batch = pd.read_csv(BEERS, dtype=str, keep_default_na=False, nrows=20)
    schema = pa.Schema.from_pandas(batch, preserve_index=False)
    path = export_batch(batch, str(tmp_path / "beers.csv"), key="index")
    rows = _read_rows(path)
    # Rows 4 and 7 write abv with a percent sign, and the clean table has 0.09 and 0.045.
    assert [rows[4][5], rows[7][5]] == ["0.09%", "0.045%"]
    _edit(path, {(4, "abv"): "0.09", (7, "abv"): "0.045"})

    result = import_batch(path, batch, key="index", schema=schema)
    expected = batch.copy()
    expected.loc[[3, 6], "abv"] = ["0.09", "0.045"]
    assert result.problems == []
    pd.testing.assert_frame_equal(result.cleaned, expected)
    assert result.cleaned.loc[12, "beer_name"] == "Garce Selé"
