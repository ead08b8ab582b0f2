import pandas as pd
import pyarrow as pa
import pytest

from activeclean_spark.cleaners import (
    REMOVED_COLUMN,
    BatchCleaner,
    CleanedBatch,
    CleanerError,
    OracleCleaner,
    RecordCleaner,
    validate_cleaned,
)

SCHEMA = pa.schema([("id", pa.int64()), ("x", pa.float64()), ("label", pa.string())])


def _batch():
    return pd.DataFrame({"id": [1, 2, 3], "x": [1.0, -50.0, None], "label": ["a", "b", "a"]})


def _clean_record(record):
    record["x"] = abs(record["x"]) if record["x"] == record["x"] and record["x"] is not None else 0.0
    return record


def test_record_cleaner_cleans_and_removes():
    def cleaner(record):
        return None if record["id"] == 2 else _clean_record(record)

    cleaned = RecordCleaner(cleaner).clean(_batch(), "id")
    table = validate_cleaned(_batch(), cleaned, "id", SCHEMA)
    assert cleaned.removed == [2]
    assert table.column("id").to_pylist() == [1, 3]
    assert table.column("x").to_pylist() == [1.0, 0.0]


def test_record_cleaner_that_raises_keeps_earlier_records():
    def cleaner(record):
        if record["id"] == 3:
            raise KeyError("no reference value")
        return _clean_record(record)

    with pytest.raises(CleanerError, match=r"cleaner raised KeyError on record id=3: 'no reference value'") as info:
        RecordCleaner(cleaner).clean(_batch(), "id")
    assert info.value.partial.table["id"].tolist() == [1, 2]


def test_record_cleaner_must_return_dict():
    with pytest.raises(CleanerError, match="cleaner returned list for record id=1; return a dict"):
        RecordCleaner(lambda record: [1]).clean(_batch(), "id")


def test_record_cleaner_must_be_callable():
    with pytest.raises(TypeError, match="cleaner function must be callable, got int"):
        RecordCleaner(3)


def test_batch_cleaner_removes_flagged_records():
    def cleaner(batch):
        batch[REMOVED_COLUMN] = batch["id"] == 3
        batch["x"] = batch["x"].abs()
        return batch

    cleaned = BatchCleaner(cleaner).clean(_batch(), "id")
    assert cleaned.removed == [3]
    assert validate_cleaned(_batch(), cleaned, "id", SCHEMA).column("x").to_pylist() == [1.0, 50.0]


def test_batch_cleaner_that_raises_names_the_batch():
    def cleaner(batch):
        raise RuntimeError("service unavailable")

    with pytest.raises(CleanerError, match=r"cleaner raised RuntimeError on the batch with id 1, 2, 3 .*: service unavailable"):
        BatchCleaner(cleaner).clean(_batch(), "id")


def test_batch_cleaner_must_return_dataframe():
    with pytest.raises(CleanerError, match="batch cleaner returned dict; return a pandas DataFrame"):
        BatchCleaner(lambda batch: {}).clean(_batch(), "id")


def test_added_column_is_rejected():
    table = _batch().assign(extra=1)
    with pytest.raises(CleanerError, match=r"cleaner changed the schema of the batch with id 1, 2, 3 ...: added columns \['extra'\], dropped columns \[\]"):
        validate_cleaned(_batch(), CleanedBatch(table), "id", SCHEMA)


def test_dropped_column_is_rejected():
    table = _batch().drop(columns=["label"])
    with pytest.raises(CleanerError, match=r"added columns \[\], dropped columns \['label'\]"):
        validate_cleaned(_batch(), CleanedBatch(table), "id", SCHEMA)


def test_wrong_type_names_the_column():
    table = _batch().assign(x=[1.0, "oops", 2.0])
    with pytest.raises(CleanerError, match=r"cleaner returned x='oops' for record id=2, which is not of the column's type double"):
        validate_cleaned(_batch(), CleanedBatch(table), "id", SCHEMA)


def test_dropped_key_is_rejected_and_kept_rows_survive():
    table = _batch().iloc[:2]
    with pytest.raises(CleanerError, match=r"cleaner dropped record id=3 \(1 in all\); return every record") as info:
        validate_cleaned(_batch(), CleanedBatch(table), "id", SCHEMA)
    assert info.value.partial.table["id"].tolist() == [1, 2]


def test_invented_key_is_rejected():
    table = _batch().assign(id=[1, 2, 99])
    with pytest.raises(CleanerError, match="cleaner returned record id=99, which was not in the batch; keys must not change"):
        validate_cleaned(_batch(), CleanedBatch(table), "id", SCHEMA)


def test_duplicated_key_is_rejected():
    table = pd.concat([_batch(), _batch().iloc[:1]])
    with pytest.raises(CleanerError, match="cleaner returned record id=1 more than once"):
        validate_cleaned(_batch(), CleanedBatch(table), "id", SCHEMA)


def test_removed_and_returned_key_is_rejected():
    with pytest.raises(CleanerError, match="cleaner returned record id=2 more than once"):
        validate_cleaned(_batch(), CleanedBatch(_batch(), removed=[2]), "id", SCHEMA)


def test_integer_column_accepts_whole_floats():
    schema = pa.schema([("id", pa.int64()), ("n", pa.int64())])
    batch = pd.DataFrame({"id": [1, 2], "n": [1.0, None]})
    table = validate_cleaned(batch, CleanedBatch(batch), "id", schema)
    assert table.column("n").to_pylist() == [1, None]


def test_oracle_looks_up_by_key(spark):
    clean = spark.createDataFrame(pd.DataFrame({"id": [1, 2, 3], "x": [1.0, 50.0, 0.0], "label": ["a", "b", "a"]}))
    cleaned = OracleCleaner(clean, "id").clean(_batch(), "id")
    table = validate_cleaned(_batch(), cleaned, "id", SCHEMA)
    assert sorted(zip(table.column("id").to_pylist(), table.column("x").to_pylist())) == [(1, 1.0), (2, 50.0), (3, 0.0)]


def test_oracle_missing_key_is_error_or_removal(spark):
    clean = spark.createDataFrame(pd.DataFrame({"id": [1, 2], "x": [1.0, 50.0], "label": ["a", "b"]}))
    with pytest.raises(CleanerError, match=r"oracle clean table has no record with id=3 \(1 of the batch missing\)"):
        OracleCleaner(clean, "id").clean(_batch(), "id")
    cleaned = OracleCleaner(clean, "id", missing="remove").clean(_batch(), "id")
    assert cleaned.removed == [3]


def test_oracle_checks_columns(spark):
    clean = spark.createDataFrame(pd.DataFrame({"id": [1], "x": [1.0]}))
    with pytest.raises(ValueError, match=r"clean table has no column \['label'\]; it needs every input column"):
        OracleCleaner(clean, "id").check_columns(["id", "x", "label"])
    with pytest.raises(ValueError, match="key column 'key' not found in the clean table"):
        OracleCleaner(clean, "key")
    with pytest.raises(ValueError, match="missing must be 'error' or 'remove', got 'skip'"):
        OracleCleaner(clean, "id", missing="skip")


def test_record_cleaner_sees_none_for_missing_values():
    seen = []

    def cleaner(record):
        seen.append(record["x"])
        return record

    RecordCleaner(cleaner).clean(_batch(), "id")
    assert seen == [1.0, -50.0, None]
