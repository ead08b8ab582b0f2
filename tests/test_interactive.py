"""The interactive cleaning session: suggest, hand back, operations, classes, round trip, report, save and load."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from activeclean_spark import CheckpointError, FeatureSpec, LogisticLoss
from activeclean_spark.interactive import (
    CLASS_COLUMN, PROBABILITY_COLUMN, SAMPLE_COLUMN, SCORE_COLUMN, CleaningSession,
)
from activeclean_spark.operations import (
    Clip, Custom, Impute, MapValues, ParseNumber, RegexReplace, Remove, SetValue,
)
from conftest import TESTS

MARKUP = "<script>alert(1)</script>"


def make_units(n=400, rate=0.3, seed=1):
    """Return ``(dirty, clean)`` tables where a ``rate`` share of records give ``length`` in mm instead of cm.

    The dirty records record this in ``unit``, so a linear detector can learn the
    error class from the one-hot unit feature.  ``weight`` has missing
    values, ``size`` is text with a unit, and ``note`` holds markup.
    """
    rng = np.random.default_rng(seed)
    length = rng.normal(10, 3, n)
    weight = rng.normal(5, 1, n)
    margin = 0.8 * (length - 10) - 1.2 * (weight - 5)
    label = (rng.random(n) < 1 / (1 + np.exp(-margin))).astype(np.int64)
    clean = pd.DataFrame({
        "id": np.arange(n, dtype=np.int64) * 3 + 1,
        "length": length,
        "unit": "cm",
        "weight": weight,
        "size": [f"{v:.1f} cm" for v in length],
        "note": np.where(rng.random(n) < 0.1, MARKUP, "fine"),
        "label": label,
    })
    dirty = clean.copy()
    in_mm = rng.random(n) < rate
    dirty.loc[in_mm, "length"] = clean.loc[in_mm, "length"] * 10
    dirty.loc[in_mm, "unit"] = "mm"
    dirty.loc[rng.random(n) < 0.1, "weight"] = np.nan
    return dirty, clean


FEATURES = FeatureSpec(label="label", numeric=["length", "weight"], categorical=["unit"], positive=1)


def to_cm():
    return [Custom(lambda frame: frame.assign(length=np.where(frame["unit"] == "mm", frame["length"] / 10,
                                                               frame["length"])),
                   columns=["length"], name="mm_to_cm"),
            MapValues("unit", {"mm": "cm"})]


@pytest.fixture(scope="module")
def units(spark):
    dirty, clean = make_units()
    return spark.createDataFrame(dirty), dirty, clean.set_index("id")


def open_session(df, **options):
    params = dict(key="id", features=FEATURES, loss=LogisticLoss(reg=1e-2), batch_size=10, num_partitions=2,
                  progress=False)
    params.update(options)
    return CleaningSession(df, **params)


# -- suggest and hand back -----------------------------------------------------


def test_suggest_adds_score_columns(units):
    df, dirty, _ = units
    with open_session(df) as session:
        batch = session.suggest()
        again = session.suggest()
        spark_batch = session.suggest(as_spark=True)

        assert len(batch) == 10 or len(batch) == len(set(batch["id"]))
        assert list(batch.columns[-4:]) == [SCORE_COLUMN, PROBABILITY_COLUMN, CLASS_COLUMN, SAMPLE_COLUMN]
        assert batch["id"].isin(dirty["id"]).all()
        assert ((batch[PROBABILITY_COLUMN] > 0) & (batch[PROBABILITY_COLUMN] <= 1)).all()
        assert (batch[SCORE_COLUMN] >= 0).all()
        assert batch[CLASS_COLUMN].isna().all()  # no detector model before the first batch
        assert batch["id"].tolist() == again["id"].tolist()
        assert sorted(r["id"] for r in spark_batch.collect()) == sorted(batch["id"])


def test_update_waits_for_whole_batch(units):
    df, _, clean_by_id = units
    with open_session(df) as session:
        batch = session.suggest()
        first = batch.iloc[:3]
        status = session.clean(clean_by_id.loc[first["id"]].reset_index())
        assert status.iteration == 0
        assert status.batch_pending == len(batch) - 3
        assert set(session.suggest()["id"]) == set(batch["id"]) - set(first["id"])

        session.remove(batch["id"].iloc[3])
        status = session.keep()
        assert status.iteration == 1
        assert status.records_cleaned == len(batch)
        assert status.batch_pending == 0
        statuses = {r["key"]: r["status"] for r in session.audit}
        assert statuses[batch["id"].iloc[3]] == "removed"
        assert statuses[batch["id"].iloc[-1]] == "unchanged"


def test_update_keeps_rest_unchanged(units):
    df, _, _ = units
    with open_session(df) as session:
        batch = session.suggest()
        session.remove([batch["id"].iloc[0]])
        status = session.update()
        assert status.iteration == 1
        assert status.records_cleaned == len(batch)
        assert sum(r["status"] == "unchanged" for r in session.audit) == len(batch) - 1


def test_hand_back_errors_name_problem(units):
    df, _, clean_by_id = units
    with open_session(df) as session:
        batch = session.suggest()
        outside = int(df.selectExpr("max(id)").first()[0]) + 3
        with pytest.raises(ValueError, match=f"id={outside}.*not in the current batch"):
            session.remove([outside])
        with pytest.raises(ValueError, match="twice"):
            session.remove([batch["id"].iloc[0], batch["id"].iloc[0]])

        bad_type = clean_by_id.loc[batch["id"].iloc[:1]].reset_index().assign(weight="heavy")
        with pytest.raises(ValueError, match="weight='heavy'"):
            session.clean(bad_type)
        no_label = clean_by_id.loc[batch["id"].iloc[:1]].reset_index().assign(label=None)
        with pytest.raises(ValueError, match="not a usable label"):
            session.clean(no_label)
        with pytest.raises(ValueError, match="no key column 'id'"):
            session.clean(pd.DataFrame({"length": [1.0]}))

        session.remove([batch["id"].iloc[1]])
        with pytest.raises(ValueError, match="already handed back"):
            session.keep([batch["id"].iloc[1]])
        assert session.status().iteration == 0


def test_added_column_names_rejected(spark):
    df = spark.createDataFrame(pd.DataFrame({"id": [1, 2], "x": [0.1, 0.2], "_score": [1, 2], "label": [0, 1]}))
    with pytest.raises(ValueError, match="'_score'"):
        CleaningSession(df, key="id", features=FeatureSpec(label="label", numeric=["x"], positive=1),
                        loss=LogisticLoss(), progress=False)


# -- operations ----------------------------------------------------------------


OPERATIONS = [
    Impute("weight", "mean"),
    SetValue("note", "checked", where=MARKUP),
    MapValues("unit", {"mm": "cm"}),
    RegexReplace("note", r"<[^>]+>", ""),
    Clip("length", upper=40.0),
    ParseNumber("size"),
    Custom(lambda frame: frame.assign(length=frame["length"].round(1)), columns=["length"], name="round_length"),
    Remove(),
]


def test_each_operation_sets_class_and_audit(units):
    df, dirty, _ = units
    with open_session(df, batch_size=8) as session:
        for operation in OPERATIONS:
            batch = session.suggest()
            assert len(batch), operation.name
            before = batch.set_index("id")
            iteration = session.status().iteration
            session.apply(operation)
            assert session.status().iteration == iteration + 1, operation.name
            # The session fitted the operation's statistic, if it has one, before applying it.
            expected = operation.apply(batch.drop(columns=[SCORE_COLUMN, PROBABILITY_COLUMN, CLASS_COLUMN,
                                                           SAMPLE_COLUMN])).set_index("id")

            records = {r["key"]: r for r in session.audit if r["iteration"] == iteration + 1}
            assert set(records) == set(batch["id"]), operation.name
            for key, record in records.items():
                if operation.removes:
                    assert record["status"] == "removed"
                    assert record["error_class"] == operation.name
                    continue
                changed = [c for c in operation.columns
                           if not (pd.isna(before.at[key, c]) and pd.isna(expected.at[key, c]))
                           and before.at[key, c] != expected.at[key, c]]
                if changed:
                    assert record["error_class"] == operation.name, (operation.name, record)
                    assert record["operation"]["operation"] == operation.describe()["operation"]
                    for column in changed:
                        assert record["cleaned"][column] == pytest.approx(expected.at[key, column])
                else:
                    assert record["error_class"] == "clean", (operation.name, record)
        # The imputed mean is the table's, fitted once with Spark.
        assert session.operations["impute_mean:weight"]["statistic"] == pytest.approx(dirty["weight"].mean())


def test_operation_list_joins_classes(units):
    df, dirty, _ = units
    with open_session(df) as session:
        batch = session.suggest()
        session.apply(to_cm())
        classes = {r["key"]: r["error_class"] for r in session.audit}
        in_mm = set(dirty.loc[dirty["unit"] == "mm", "id"])
        for key in batch["id"]:
            expected = "mm_to_cm+map_values:unit" if key in in_mm else "clean"
            assert classes[key] == expected


def test_preview_and_apply_to_class(units):
    df, dirty, clean_by_id = units
    with open_session(df, seed=2) as session:
        with pytest.raises(ValueError, match="not learned any error class"):
            session.preview(to_cm())
        while "mm_to_cm+map_values:unit" not in (getattr(session._run.loop.detector_model, "classes", None) or []):
            session.apply(to_cm())
            assert session.status().iteration < 10
        cleaned_before = session.status().records_cleaned
        cleaned_keys = {r["key"] for r in session.audit}

        preview = session.preview(to_cm())
        in_mm = set(dirty.loc[dirty["unit"] == "mm", "id"]) - cleaned_keys
        members = set(preview.rows.column("id").to_pylist())
        assert preview.records == len(members)
        assert not members & cleaned_keys
        # The unit is a feature, so the detector separates the class almost perfectly.
        assert len(members & in_mm) >= 0.9 * len(in_mm)
        assert len(members - in_mm) <= 0.1 * len(members)
        changed = preview.changes[preview.changes["column"] == "length"]
        for key, before, after in changed[["id", "before", "after"]].itertuples(index=False):
            assert after == pytest.approx(before / 10)
            assert after == pytest.approx(clean_by_id.at[key, "length"])
        assert "records in the class" in str(preview)
        assert session.status().records_cleaned == cleaned_before  # a preview changes nothing

        status = session.apply_to_class(to_cm(), preview=preview)
        assert status.records_cleaned == cleaned_before + preview.records
        class_records = [r for r in session.audit if r["sample"] == "class"]
        assert {r["key"] for r in class_records} == members
        assert all(r["probability"] is None for r in class_records)
        assert session.suggest()["id"].isin(members).sum() == 0


def test_apply_rejects_bad_operations(units):
    df, _, _ = units
    with open_session(df) as session:
        session.suggest()
        with pytest.raises(TypeError, match="operation"):
            session.apply(lambda frame: frame)
        with pytest.raises(ValueError, match="absent"):
            session.apply(Clip("absent", 0, 1))
        assert session.status().batch_pending == len(session.suggest())


# -- export and import ---------------------------------------------------------


def test_export_import_round_trip(units, tmp_path):
    df, _, clean_by_id = units
    with open_session(df) as session:
        batch = session.suggest()
        path = session.export_batch(str(tmp_path / "batch.csv"))
        edited = pd.read_csv(path, dtype=str, keep_default_na=False)
        keys = batch["id"].tolist()
        edited.loc[0, "length"] = str(clean_by_id.at[keys[0], "length"])
        edited.loc[1, "weight"] = "heavy"
        edited.loc[2, "note"] = "=HYPERLINK(\"x\")"
        edited.loc[3, "__remove__"] = "yes"
        edited.to_csv(path, index=False)

        result = session.import_batch(path)
        problems = {(p.key, p.column) for p in result.problems}
        assert problems == {(keys[1], "weight"), (keys[2], "note")}
        assert result.removed == [keys[3]]
        open_keys = set(session.suggest()["id"])
        assert open_keys == {keys[1], keys[2]}
        assert session.status().iteration == 0

        session.keep()
        record = next(r for r in session.audit if r["key"] == keys[0])
        assert record["cleaned"]["length"] == pytest.approx(clean_by_id.at[keys[0], "length"])
        assert record["changed_columns"] == ["length"]


def test_export_neutralizes_formulas(spark, tmp_path):
    dirty, _ = make_units(n=60)
    dirty["note"] = "=1+2"
    df = spark.createDataFrame(dirty)
    with open_session(df) as session:
        path = session.export_batch(str(tmp_path / "batch.csv"))
        text = open(path, encoding="utf-8").read()
        assert "'=1+2" in text
        assert ",=1+2" not in text
        result = session.import_batch(path)
        assert result.problems == []
        assert session.status().iteration == 1
        assert all(r["status"] == "unchanged" for r in session.audit)


# -- diagnose and report -------------------------------------------------------


def test_report_escapes_markup(units, tmp_path):
    df, _, _ = units
    with open_session(df) as session:
        session.apply(to_cm())
        # Markup in a cleaned value and in an error class name must reach the page as text.
        batch = session.suggest()
        session.clean(batch.iloc[:1].assign(note=MARKUP))
        session.apply(Custom(lambda frame: frame.assign(weight=frame["weight"].fillna(0.0) + 1.0), columns=["weight"],
                             name="<b>zero</b>"))
        session.suggest()
        diagnosis = session.diagnose(method="pca", sample=100)
        assert diagnosis.in_batch.sum() == len(session.suggest())
        html = diagnosis._repr_html_()
        assert "<script" not in html

        files = session.report(str(tmp_path / "report.html"), method="pca", sample=100)
        page = open(tmp_path / "report.html", encoding="utf-8").read()
        pngs = [f for f in files if f.endswith(".png")]
        assert len(pngs) == 3
        for png in pngs:
            assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert "<script" not in page
        assert "&lt;b&gt;zero&lt;/b&gt;" in page
        assert "<b>zero" not in page
        assert "mm_to_cm+map_values:unit" in page


def test_status_reports_metric(units, spark):
    df, _, clean_by_id = units
    test = spark.createDataFrame(clean_by_id.reset_index())
    with open_session(df, test=test) as session:
        first = session.status()
        assert first.metric == "accuracy"
        assert first.metric_value == first.dirty_metric_value
        session.apply(to_cm())
        status = session.status()
        assert status.iteration == 1
        assert status.step_norm > 0
        assert status.metric_value == session.history[-1]["test"]["accuracy"]
        assert "held-out accuracy" in str(status)
        assert "records_cleaned" in status._repr_html_()


# -- save and load -------------------------------------------------------------


def test_save_load_keeps_open_batch(units, tmp_path):
    df, _, clean_by_id = units
    with open_session(df) as session:
        session.apply(to_cm())
        batch = session.suggest()
        session.apply(to_cm(), ids=batch["id"].iloc[:4].tolist())
        session.save(str(tmp_path / "saved"))
        pending = set(session.suggest()["id"])
        theta = session.model.theta

    loaded = CleaningSession.load(str(tmp_path / "saved"), df, progress=False)
    with loaded:
        assert set(loaded.suggest()["id"]) == pending
        assert loaded.status().batch_pending == len(pending)
        assert np.array_equal(loaded.model.theta, theta)
        assert len(loaded.audit) == len(set(loaded.audit[i]["key"] for i in range(len(loaded.audit))))
        loaded.apply(to_cm())
        assert loaded.status().iteration == 2
        keys = {r["key"] for r in loaded.audit if r["iteration"] == 2}
        assert keys == set(batch["id"])
        assert {r["error_class"] for r in loaded.audit if r["key"] in set(batch["id"].iloc[:4])} <= {
            "mm_to_cm+map_values:unit", "clean"}


# -- a whole session on real data ------------------------------------------------


@pytest.mark.slow
def test_beers_session_resumes_elsewhere(spark, tmp_path):
    import beers_session

    if not os.path.isdir(beers_session.FOLDER):
        pytest.skip("beers data not found beside the repository")
    train, test, clean_by_key = beers_session.spark_tables(spark)
    session = beers_session.open_session(train, test)
    for _ in range(beers_session.SAVED_BATCH - 1):
        beers_session.clean_batch(session, clean_by_key)
    beers_session.clean_batch(session, clean_by_key, manual_only=True)
    assert session.status().batch_pending > 0
    saved = session.save(str(tmp_path / "saved"))

    # The same session goes on without stopping ...
    beers_session.finish(session, clean_by_key, beers_session.SAVED_BATCH)
    status = session.status()
    theta = session.model.theta
    keys = [r["key"] for r in session.audit]
    classes = [str(r["error_class"]) for r in session.audit]
    session.close()

    # ... and another Python process with its own Spark session resumes the saved one.
    result = tmp_path / "resumed.npz"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [TESTS, os.environ.get("PYTHONPATH")])))
    process = subprocess.Popen([sys.executable, os.path.join(TESTS, "beers_session.py"), saved, str(result)],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        _, stderr = process.communicate(timeout=600)
    finally:
        # The process group contains the resumed session's Spark JVM, which is stopped with it.
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()
    assert process.returncode == 0, stderr[-3000:]
    resumed = np.load(result)

    assert status.iteration == beers_session.BATCHES
    # Same draws and the same arithmetic in the same order: equal up to rounding.
    np.testing.assert_allclose(resumed["theta"], theta, rtol=1e-10, atol=1e-12)
    assert resumed["keys"].tolist() == keys
    assert resumed["classes"].tolist() == classes
    assert "parse_number:ounces" in classes
    assert "parse_number:ounces+parse_number:abv" in classes
    assert classes.count("parse_number:ounces") > 100  # the class application
    assert json.loads(open(os.path.join(saved, "session.json")).read())["iteration"] == beers_session.SAVED_BATCH - 1


def test_result_writes_outputs(units, spark, tmp_path):
    df, dirty, clean_by_id = units
    with open_session(df) as session:
        batch = session.suggest()
        session.remove([batch["id"].iloc[0]])
        session.apply(to_cm())
        result = session.result(str(tmp_path / "out"))
        assert result.n_cleaned == len(batch)
        assert np.array_equal(result.model.theta, session.model.theta)
    table = spark.read.parquet(str(tmp_path / "out" / "cleaned_table")).toPandas().set_index("id")
    assert len(table) == len(dirty) - 1
    assert batch["id"].iloc[0] not in table.index
    for key in batch["id"].iloc[1:]:
        assert table.at[key, "length"] == pytest.approx(clean_by_id.at[key, "length"])
        assert table.at[key, "_cleaned"]
    audit = [json.loads(line) for line in open(tmp_path / "out" / "audit.jsonl")]
    assert {record["key"] for record in audit} == set(batch["id"])


# -- guards found by trying the session as an analyst -------------------------------


def test_stale_preview_rejected(units):
    df, _, _ = units
    with open_session(df, seed=2) as session:
        while "mm_to_cm+map_values:unit" not in (getattr(session._run.loop.detector_model, "classes", None) or []):
            session.apply(to_cm())
        preview = session.preview(to_cm())
        session.apply(to_cm())
        cleaned = session.status().records_cleaned
        with pytest.raises(ValueError, match="make a new preview"):
            session.apply_to_class(to_cm(), preview=preview)
        assert session.status().records_cleaned == cleaned


def test_unusable_label_keeps_batch_open(spark, tmp_path):
    dirty, _ = make_units(n=200)
    dirty["label"] = dirty["label"].astype(object)
    dirty.loc[::3, "label"] = None  # a third of the records have no label
    df = spark.createDataFrame(dirty)
    # Uniform draws (floor 1): records without a label have no gradient and would rarely be drawn.
    with open_session(df, floor=1.0) as session:
        batch = session.suggest()
        unlabeled = batch.loc[batch["label"].isna(), "id"].tolist()
        assert unlabeled, "the seed should draw a record without a label"
        with pytest.raises(ValueError, match="not a usable label"):
            session.keep()
        assert session.status().batch_pending == len(batch)
        with pytest.raises(ValueError, match="not a usable label"):
            session.update()

        path = session.export_batch(str(tmp_path / "batch.csv"))
        with pytest.raises(FileExistsError, match="overwrite=True"):
            session.export_batch(path)
        result = session.import_batch(path)
        assert {(p.key, p.column) for p in result.problems} == {(k, "label") for k in unlabeled}
        assert all(p.row >= 2 for p in result.problems)
        assert set(session.suggest()["id"]) == set(unlabeled)

        session.remove(unlabeled[:1])
        session.reopen(unlabeled[:1])
        assert set(session.suggest()["id"]) == set(unlabeled)
        session.remove(unlabeled)
        assert session.status().iteration == 1


def test_key_type_mismatch_named(spark):
    dirty, _ = make_units(n=120)
    dirty["id"] = dirty["id"].astype(str)
    with open_session(spark.createDataFrame(dirty)) as session:
        key = session.suggest()["id"].iloc[0]
        with pytest.raises(ValueError, match=f"the key is a int.*pass '{key}'"):
            session.remove([int(key)])


def test_failed_operation_not_recorded(units):
    df, _, _ = units
    with open_session(df) as session:
        session.suggest()
        with pytest.raises(ValueError, match="absent"):
            session.apply(ParseNumber("absent"))
        with pytest.raises(ValueError, match="'absent'"):
            session.diagnose(columns=["absent"], method="pca")
        assert session.operations == {}


def test_load_rejects_other_table(units, spark, tmp_path):
    df, dirty, _ = units
    with open_session(df) as session:
        session.apply(to_cm())
        session.save(str(tmp_path / "saved"))
    with pytest.raises(CheckpointError, match="no saved session"):
        CleaningSession.load(str(tmp_path / "nothing"), df)
    # Other columns and another record count are found before the table is cached.
    with pytest.raises(CheckpointError, match="columns"):
        CleaningSession.load(str(tmp_path / "saved"), df.drop("note"), progress=False)
    with pytest.raises(CheckpointError, match="records"):
        CleaningSession.load(str(tmp_path / "saved"), df.limit(100), progress=False)
    cached = spark.sparkContext._jsc.getPersistentRDDs().size()
    changed = dirty.copy()
    changed.loc[5, "weight"] = 99.0
    with pytest.raises(CheckpointError, match="cannot load the session.*input"):
        CleaningSession.load(str(tmp_path / "saved"), spark.createDataFrame(changed), progress=False)
    # The failed load released the table it had cached.
    assert spark.sparkContext._jsc.getPersistentRDDs().size() == cached
