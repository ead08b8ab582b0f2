"""End-to-end runs of the job on local[2]: configuration, outputs and failures."""

import json
import os
import re

import numpy as np
import pandas as pd
import pytest

from activeclean_spark.cli import main
from activeclean_spark.config import ConfigError, load_config
from activeclean_spark.model import ActiveCleanModel
from conftest import make_tables

N_RECORDS = 400


def _write_config(tmp_path, dirty, clean, *, cleaner=None, extra=""):
    dirty_path, clean_path = tmp_path / "dirty.csv", tmp_path / "clean.csv"
    dirty.to_csv(dirty_path, index=False)
    clean.to_csv(clean_path, index=False)
    cleaner = cleaner or f'kind = "oracle"\npath = "{clean_path}"'
    # A held-out split of the clean table needs the oracle's clean table.
    test = "[test]\nfraction = 0.25" if "oracle" in cleaner else ""
    text = f"""
[input]
path = "{dirty_path}"
key = "id"

[features]
numeric = ["x0", "x1", "x2", "x3"]
categorical = ["color"]
label = "label"
positive = 1

[model]
loss = "logistic"
reg = 0.01

[cleaner]
{cleaner}

{test}

[run]
budget = 60
batch_size = 20
seed = 3
partitions = 2
reference = {"true" if "oracle" in cleaner else "false"}

[output]
dir = "{tmp_path / 'out'}"
{extra}
"""
    path = tmp_path / "job.toml"
    path.write_text(text)
    return str(path)


def _read_lines(path):
    with open(path) as handle:
        return [json.loads(line) for line in handle]


@pytest.fixture(scope="module")
def completed_run(spark, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("job")
    dirty, clean = make_tables(n=N_RECORDS, seed=5)
    config = _write_config(tmp_path, dirty, clean)
    assert main(["run", config, "--quiet"]) == 0
    return tmp_path / "out", dirty, clean


def test_model_file(completed_run):
    out, _, _ = completed_run
    data = json.loads((out / "model.json").read_text())
    assert data["loss"] == {"name": "logistic", "reg": 0.01}
    assert list(data["coefficients"])[:2] == ["x0", "x1"]  # no missing x0 in the dirty data, so no indicator
    assert "color=red" in data["coefficients"]
    metrics = data["metrics"]
    assert metrics["records_cleaned"] == 60
    for name in ("test", "dirty_test", "clean_test"):
        assert 0.5 < metrics[name]["accuracy"] <= 1.0
    assert metrics["model_error"] < metrics["dirty_model_error"]
    assert (out / "dirty_model" / "model.json").exists()
    assert (out / "clean_model" / "model.json").exists()


def test_saved_model_predicts(completed_run, spark):
    out, dirty, _ = completed_run
    model = ActiveCleanModel.load(str(out))
    predictions = model.transform(spark.createDataFrame(dirty)).select("id", "prediction").toPandas()
    assert len(predictions) == N_RECORDS
    assert set(predictions["prediction"].unique()) <= {0.0, 1.0}


def test_saved_model_predicts_without_label(completed_run, spark):
    out, dirty, _ = completed_run
    model = ActiveCleanModel.load(str(out))
    unlabeled = spark.createDataFrame(dirty.drop(columns=["label"]))
    predictions = model.transform(unlabeled).toPandas()
    assert list(predictions.columns) == ["id", "x0", "x1", "x2", "x3", "color", "prediction"]
    assert predictions["prediction"].notna().all()


def test_history_file(completed_run):
    out, _, _ = completed_run
    history = _read_lines(out / "history.jsonl")
    # A batch of 20 draws with replacement may repeat a record, so it can
    # clean fewer than 20 and the budget of 60 may take a fourth iteration.
    assert [h["iteration"] for h in history] == list(range(1, len(history) + 1))
    assert history[-1]["cleaned"] == 60
    assert all(0 < h["batch_records"] <= h["batch_draws"] <= 20 for h in history)
    assert np.all(np.diff([h["cleaned"] for h in history]) > 0)
    for record in history:
        assert record["step_norm"] > 0
        assert "accuracy" in record["test"]
        assert record["model_error"] > 0
        assert record["seconds"] > 0


def test_audit_trail(completed_run):
    out, dirty, clean = completed_run
    audit = _read_lines(out / "audit.jsonl")
    assert len(audit) == 60
    assert len({record["key"] for record in audit}) == 60
    clean_by_id = clean.set_index("id")
    dirty_by_id = dirty.set_index("id")
    for record in audit:
        assert 0 < record["probability"] <= 1
        assert record["draws"] >= 1
        assert record["applied"] is True
        key = record["key"]
        assert record["dirty"]["x0"] == pytest.approx(dirty_by_id.loc[key, "x0"])
        assert record["cleaned"]["x0"] == pytest.approx(clean_by_id.loc[key, "x0"])
        changed = dirty_by_id.loc[key, "x0"] != clean_by_id.loc[key, "x0"]
        assert record["status"] == ("changed" if changed else "unchanged")
        assert record["changed_columns"] == (["x0"] if changed else [])


def test_cleaned_table(completed_run, spark):
    out, dirty, clean = completed_run
    table = spark.read.parquet(str(out / "cleaned_table")).toPandas().set_index("id").sort_index()
    assert len(table) == N_RECORDS
    assert table["_cleaned"].sum() == 60
    cleaned_ids = table.index[table["_cleaned"]]
    clean_by_id, dirty_by_id = clean.set_index("id"), dirty.set_index("id")
    np.testing.assert_allclose(table.loc[cleaned_ids, "x0"], clean_by_id.loc[cleaned_ids, "x0"])
    untouched = table.index[~table["_cleaned"]]
    np.testing.assert_allclose(table.loc[untouched, "x0"], dirty_by_id.loc[untouched, "x0"])


def test_existing_output_is_not_overwritten(completed_run):
    out, _, _ = completed_run
    config = str(out.parent / "job.toml")
    assert main(["run", config, "--quiet"]) != 0 or False
    assert len(_read_lines(out / "audit.jsonl")) == 60


FAILING_CLEANER = """
calls = {"n": 0}

def clean(record):
    calls["n"] += 1
    if calls["n"] == 25:
        raise ValueError("reference lookup failed")
    if record["id"] == 3:
        return None
    record["x0"] = abs(record["x0"])
    return record
"""


def test_failing_cleaner_keeps_cleaned_records(spark, tmp_path, capsys):
    module = tmp_path / "my_cleaner.py"
    module.write_text(FAILING_CLEANER)
    dirty, clean = make_tables(n=N_RECORDS, seed=6)
    config = _write_config(tmp_path, dirty, clean, cleaner=f'kind = "record"\nfunction = "{module}:clean"')
    assert main(["run", config, "--quiet"]) == 1
    assert "cleaner raised ValueError on record id=" in capsys.readouterr().err

    out = tmp_path / "out"
    audit = _read_lines(out / "audit.jsonl")
    applied = [r for r in audit if r["applied"]]
    unapplied = [r for r in audit if not r["applied"]]
    assert len(applied) == 20
    assert len(unapplied) == 4
    assert all(r["cleaned"]["x0"] >= 0 for r in unapplied)
    history = _read_lines(out / "history.jsonl")
    assert len(history) == 1
    table = pd.read_parquet(out / "cleaned_table")
    assert table["_cleaned"].sum() == 20
    assert json.loads((out / "model.json").read_text())["metrics"]["records_cleaned"] == 20


def _run_with_record_cleaner(tmp_path, source):
    """Run a job whose record cleaner is ``clean`` in ``source``; return its exit status."""
    module = tmp_path / "user_cleaner.py"
    module.write_text(source)
    dirty, clean = make_tables(n=200, seed=7)
    config = _write_config(tmp_path, dirty, clean, cleaner=f'kind = "record"\nfunction = "{module}:clean"')
    return main(["run", config, "--quiet"])


def test_cleaner_returning_bad_label_stops(spark, tmp_path, capsys):
    status = _run_with_record_cleaner(tmp_path, "def clean(record):\n    record['label'] = 7\n    return record\n")
    assert status == 1
    assert "has label label=7, which is not a usable label" in capsys.readouterr().err


@pytest.mark.parametrize(
    "override, message",
    [
        ("run.batch_size=0", "run.batch_size must be a positive integer, got 0"),
        ("run.colour=1", "unknown option run.colour; options of \\[run\\] are"),
        ("model.loss=\"svm\"", "model.loss must be one of least_squares, logistic, hinge, huber, got 'svm'"),
        ("run.step_schedule=\"adam\"", "run.step_schedule must be one of constant, inverse, inverse_sqrt, adagrad"),
        ("features.label=\"missing_column\"", "input table has no column 'missing_column' \\(the label\\)"),
        ("input.key=\"color\"", "key column 'color' is not unique"),
        ("run.sampling=\"random\"", "run.sampling must be one of importance, uniform, oracle, uncertainty"),
        ("run.update=\"refit\"", "run.update must be one of sgd, sgd_refit, retrain_cleaned, retrain_all"),
        ("detector.threshold=2", "detector.threshold must be a number in \\[0.5, 1\\)"),
        ("detector.rule=\"x9 > 1\"", "detector.rule 'x9 > 1' is not valid Spark SQL"),
        ("features.sparse=\"yes\"", "features.sparse must be 'auto', true or false, got 'yes'"),
        ("features.text_buckets=0", "features.text_buckets must be a positive integer, got 0"),
    ],
)
def test_invalid_configuration_is_reported(spark, tmp_path, capsys, override, message):
    dirty, clean = make_tables(n=50, seed=8)
    config = _write_config(tmp_path, dirty, clean, extra="overwrite = true")
    status = main(["run", config, "--quiet", "--set", override])
    assert status != 0
    assert re.search(message, capsys.readouterr().err)


def test_text_column_from_config(spark, tmp_path):
    dirty, clean = make_tables(n=120, seed=8)
    config = _write_config(tmp_path, dirty, clean)
    text = ["--set", "features.categorical=[]", "--set", 'features.text=["color"]', "--set", "features.text_buckets=64",
            "--set", "features.sparse=true"]
    assert main(["run", config, "--quiet", *text]) == 0
    model = ActiveCleanModel.load(str(tmp_path / "out"))
    assert model.featurizer.sparse
    assert model.featurizer.text == [{"name": "color", "buckets": 64}]
    assert len(model.coefficients) == 4 + 65


def test_config_requires_input(tmp_path):
    path = tmp_path / "empty.toml"
    path.write_text("[run]\nbudget = 3\n")
    with pytest.raises(ConfigError, match="set exactly one of input.path"):
        load_config(str(path))


def test_config_rejects_bad_toml(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[run\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_config(str(path))


def test_missing_input_file_is_reported(spark, tmp_path, capsys):
    dirty, clean = make_tables(n=50, seed=8)
    config = _write_config(tmp_path, dirty, clean)
    os.remove(tmp_path / "dirty.csv")
    assert main(["run", config, "--quiet"]) == 2
    assert "input file" in capsys.readouterr().err


def test_cleaner_wrong_type_is_kept_in_audit(spark, tmp_path, capsys):
    status = _run_with_record_cleaner(tmp_path, "def clean(record):\n    record['x0'] = 'unknown'\n    return record\n")
    assert status == 1
    assert "cleaner returned x0='unknown' for record id=" in capsys.readouterr().err
    audit = _read_lines(tmp_path / "out" / "audit.jsonl")
    assert 0 < len(audit) <= 20
    assert all(record["applied"] is False for record in audit)
    assert all(record["cleaned"]["x0"] == "unknown" for record in audit)


def test_missing_values_reach_audit_as_null(spark, tmp_path):
    dirty, clean = make_tables(n=200, seed=10)
    missing = np.arange(len(dirty)) % 3 == 0
    dirty.loc[missing, "x1"] = np.nan
    clean.loc[missing, "x1"] = np.nan
    config = _write_config(tmp_path, dirty, clean)
    assert main(["run", config, "--quiet"]) == 0
    audit = _read_lines(tmp_path / "out" / "audit.jsonl")
    assert len(audit) == 60
    with_null = [r for r in audit if r["dirty"]["x1"] is None]
    assert with_null
    assert all(r["cleaned"]["x1"] is None for r in with_null)


def test_failed_run_does_not_block_rerun(spark, tmp_path, capsys):
    dirty, clean = make_tables(n=100, seed=11)
    config = _write_config(tmp_path, dirty, clean)
    assert main(["run", config, "--quiet", "--set", 'features.label="no_such_label"']) == 2
    assert "input table has no column 'no_such_label' (the label)" in capsys.readouterr().err
    assert main(["run", config, "--quiet", "--set", "run.budget=20"]) == 0
    assert len(_read_lines(tmp_path / "out" / "audit.jsonl")) == 20


def test_override_replaces_exclusive_option(tmp_path):
    dirty, clean = make_tables(n=20, seed=12)
    path = _write_config(tmp_path, dirty, clean)
    config = load_config(path, ["run.budget_fraction=0.5"])
    assert config["run"]["budget_fraction"] == 0.5
    assert config["run"]["budget"] is None


def test_rule_and_learned_detector_from_config(spark, tmp_path):
    dirty, clean = make_tables(n=N_RECORDS, seed=2)
    extra = 'overwrite = true\n\n[detector]\nlearned = true\nmin_records = 20\nrule = "abs(x0) > 0.5"'
    config = _write_config(tmp_path, dirty, clean, extra=extra)
    assert main(["run", config, "--quiet"]) == 0
    with open(tmp_path / "out" / "history.jsonl", encoding="utf-8") as handle:
        history = [json.loads(line) for line in handle]
    assert history[0]["trusted"] > 0
    assert "precision" in history[0]["detection"]
    with open(tmp_path / "out" / "audit.jsonl", encoding="utf-8") as handle:
        audit = [json.loads(line) for line in handle]
    flagged = set(dirty.loc[dirty["x0"].abs() > 0.5, "id"])
    assert {r["key"] for r in audit if r["sample"] == "batch"} <= flagged


def test_rule_and_rule_function_exclude_each_other(tmp_path):
    dirty, clean = make_tables(n=20, seed=8)
    extra = '\n[detector]\nrule = "x0 > 1"\nrule_function = "rules:flag"'
    with pytest.raises(ConfigError, match="set at most one of detector.rule"):
        load_config(_write_config(tmp_path, dirty, clean, extra=extra))
