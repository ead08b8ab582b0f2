"""Detectors, estimator scoring and the baseline updates inside the Spark loop (local[2])."""

import json

import numpy as np
import pytest

from activeclean_spark.detector import LearnedDetector, RuleDetector
from conftest import make_engine, make_tables


@pytest.fixture(scope="module")
def frames(spark):
    dirty, clean = make_tables(n=400, rate=0.1, seed=3)
    return dirty, clean, spark.createDataFrame(dirty), spark.createDataFrame(clean)


_engine = make_engine


def _audit(directory):
    with open(directory / "audit.jsonl", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def test_rule_expression_limits_draws(frames, tmp_path):
    dirty, clean, dirty_df, _ = frames
    # The corruption multiplies x0 by -3, so |x0| > 1 holds for most corrupted records.
    engine = _engine(clean, rule=RuleDetector("abs(x0) > 1"))
    result = engine.fit(dirty_df, output_dir=str(tmp_path / "run"))
    flagged = set(dirty.loc[dirty["x0"].abs() > 1, "id"])
    drawn = {record["key"] for record in _audit(tmp_path / "run")}
    assert drawn <= flagged
    assert result.history[0]["trusted"] == len(dirty) - len(flagged)


def test_rule_predicate_matches_expression(frames):
    dirty, clean, dirty_df, _ = frames
    by_expression = _engine(clean, rule=RuleDetector("abs(x0) > 1")).fit(dirty_df)
    by_predicate = _engine(clean, rule=RuleDetector(predicate=lambda frame: frame["x0"].abs() > 1)).fit(dirty_df)
    np.testing.assert_allclose(by_expression.model.theta, by_predicate.model.theta)


def test_rule_expression_invalid_sql_is_named(frames):
    _, clean, dirty_df, _ = frames
    with pytest.raises(ValueError, match="rule expression 'no_such_column > 1' is not valid Spark SQL"):
        _engine(clean, rule=RuleDetector("no_such_column > 1")).prepare(dirty_df)


def test_rule_expression_must_be_boolean(frames):
    _, clean, dirty_df, _ = frames
    with pytest.raises(ValueError, match="has type double, not boolean"):
        _engine(clean, rule=RuleDetector("x0 + 1")).prepare(dirty_df)


def test_rule_predicate_error_reaches_caller(frames):
    _, clean, dirty_df, _ = frames
    with pytest.raises(ValueError, match="rule predicate raised KeyError"):
        _engine(clean, rule=RuleDetector(predicate=lambda frame: frame["price"] > 0)).prepare(dirty_df)


@pytest.fixture(scope="module")
def missing_frames(spark):
    """Tables whose dirty records lack x0, an error the featurizer's null indicator makes detectable."""
    _, clean = make_tables(n=400, rate=0.1, seed=3)
    dirty = clean.copy()
    dirty.loc[np.random.default_rng(3).random(len(dirty)) < 0.15, "x0"] = np.nan
    return dirty, clean, spark.createDataFrame(dirty), spark.createDataFrame(clean)


def test_learned_detector_reports_detection(missing_frames, tmp_path):
    _, clean, dirty_df, clean_df = missing_frames
    engine = _engine(clean, budget=160, detector=LearnedDetector(min_records=20))
    result = engine.fit(dirty_df, reference=clean_df, output_dir=str(tmp_path / "run"))
    detection = [record["detection"] for record in result.history]
    # Before the detector is fitted every uncleaned record is in R_dirty: recall 1.
    assert detection[0]["recall"] == 1.0
    # Precision is None once nothing is left flagged, recall once no dirty record is left.
    assert all(d["precision"] is None or 0 <= d["precision"] <= 1 for d in detection)
    later = result.history[-1]
    assert later["detector"]["certifying"]
    assert later["trusted"] > 0, "the detector should certify some records after 140 cleaned"
    # Missing x0 is what the null indicator shows, so certified records are truly clean.
    assert later["detection"]["recall"] in (1.0, None)
    audit = _audit(tmp_path / "run")
    assert any(record["sample"] == "audit" for record in audit)
    assert all(record["error_class"] in ("clean", "x0") for record in audit)
    assert result.model.metrics["model_error"] < result.model.metrics["dirty_model_error"]


def test_certified_records_are_never_drawn(missing_frames, tmp_path):
    _, clean, dirty_df, clean_df = missing_frames
    engine = _engine(clean, budget=200, detector=LearnedDetector(min_records=20, audit=0.0))
    result = engine.fit(dirty_df, reference=clean_df, output_dir=str(tmp_path / "run"))
    assert result.history[-1]["trusted"] > 0
    keys = [record["key"] for record in _audit(tmp_path / "run")]
    assert len(keys) == len(set(keys))
    assert all(record["sample"] == "batch" for record in _audit(tmp_path / "run"))


@pytest.mark.parametrize("update", ["retrain_cleaned", "retrain_all"])
def test_refit_on_everything_cleaned_gives_clean_model(frames, update):
    dirty, clean, dirty_df, clean_df = frames
    engine = _engine(clean, budget=len(dirty), batch_size=200, sampling="uniform", update=update)
    result = engine.fit(dirty_df, reference=clean_df)
    assert result.n_cleaned == len(dirty)
    # Both refits see exactly the clean table once everything is cleaned;
    # the remaining difference is L-BFGS's tolerance.
    assert result.model.metrics["model_error"] < 1e-3


def test_oracle_sampling_needs_reference(frames):
    _, clean, dirty_df, _ = frames
    with pytest.raises(ValueError, match="needs the reference table"):
        _engine(clean, sampling="oracle").prepare(dirty_df)


def test_oracle_sampling_runs(frames):
    _, clean, dirty_df, clean_df = frames
    result = _engine(clean, sampling="oracle").fit(dirty_df, reference=clean_df)
    assert result.model.metrics["model_error"] < result.model.metrics["dirty_model_error"]


def test_uncertainty_with_sgd_is_rejected(frames):
    _, clean, _, _ = frames
    with pytest.raises(ValueError, match="use update 'retrain_cleaned' or 'retrain_all'"):
        _engine(clean, sampling="uncertainty")


def test_uncertainty_draws_nearest_boundary(frames, tmp_path):
    _, clean, dirty_df, _ = frames
    engine = _engine(clean, budget=20, sampling="uncertainty", update="retrain_cleaned")
    result = engine.fit(dirty_df, output_dir=str(tmp_path / "run"))
    drawn = {record["key"] for record in _audit(tmp_path / "run")}
    # The first batch is the 20 records the dirty model is least sure about.
    prepared = engine.prepare(dirty_df)
    theta = prepared.dirty_model.theta
    blocks = prepared.blocks.collect()
    prepared.release()
    keys = np.concatenate([b.keys for b in blocks])
    margins = np.concatenate([np.abs(b.X @ theta[:-1] + theta[-1]) for b in blocks])
    nearest = set(keys[np.argsort(margins)[:20]].tolist())
    assert drawn == nearest
    assert result.n_cleaned == 20


def test_clone_changes_one_parameter(frames):
    _, clean, _, _ = frames
    engine = _engine(clean)
    other = engine.clone(batch_size=5)
    assert other.batch_size == 5
    assert engine.batch_size == 20
    with pytest.raises(TypeError, match="no parameter 'batch'"):
        engine.clone(batch=5)
    with pytest.raises(ValueError, match="sampling must be one of"):
        engine.clone(sampling="random")


def test_refit_start_heavy_corruption(spark):
    # Half the records have x0 scaled by -3: the dirty model is far from the
    # clean one, and a few SGD steps from it cannot get close.
    dirty, clean = make_tables(n=600, rate=0.5, seed=4)
    dirty_df, clean_df = spark.createDataFrame(dirty), spark.createDataFrame(clean)
    engine = _engine(clean, budget=120, batch_size=10)
    prepared = engine.prepare(dirty_df, reference=clean_df)
    try:
        errors = {"sgd": [], "sgd_refit": []}
        for seed in range(3):
            for update in errors:
                result = engine.clone(seed=seed, update=update).run(prepared)
                errors[update].append(result.model.metrics["model_error"])
                if update == "sgd_refit":
                    starts = [record["start"] for record in result.history[1:]]
                    assert set(starts) <= {"iterate", "refit"}
                    # An iterate that stepped from a refit may win the next
                    # round, so only some refit start is required.
                    assert set(starts) - {"iterate"}, starts
                    assert all(len(record["estimated_losses"]) == 2 for record in result.history[1:])
                else:
                    assert "start" not in result.history[-1]
    finally:
        prepared.release()
    # Each seed's refit start ends closer to the clean model than twelve
    # plain SGD steps do, by a large share of the dirty model's error.
    for seed in range(3):
        assert errors["sgd_refit"][seed] < errors["sgd"][seed] - 0.1, errors
