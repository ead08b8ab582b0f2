"""The ActiveClean loop on local[2]: convergence against the fully clean model."""

import numpy as np
import pytest

from activeclean_spark import (
    ActiveClean,
    ActiveCleanModel,
    FeatureSpec,
    FunctionFeaturizer,
    LogisticLoss,
    Loss,
    OracleCleaner,
)
from conftest import make_engine, make_tables

SEEDS = range(5)


@pytest.fixture(scope="module")
def prepared(spark):
    # 5% of the records corrupted, as in the published experiments: rare
    # corruption is where importance sampling pays off.
    dirty, clean = make_tables(n=1000, rate=0.05, seed=1)
    dirty_df, clean_df = spark.createDataFrame(dirty), spark.createDataFrame(clean)
    # The published SGD update alone: these tests check its convergence and
    # the gain of importance sampling within it.
    engine = make_engine(clean_df, budget=200, update="sgd")
    data = engine.prepare(dirty_df, reference=clean_df)
    yield engine, data
    data.release()


def _final_errors(engine, data, floor):
    engine.floor = floor
    errors = []
    for seed in SEEDS:
        engine.seed = seed
        errors.append(engine.run(data).model.metrics["model_error"])
    return np.array(errors)


def test_cleaning_moves_toward_clean_model(prepared):
    engine, data = prepared
    errors = _final_errors(engine, data, floor=0.05)
    dirty_error = data.dirty_model.metrics.get("model_error") or np.linalg.norm(
        data.dirty_model.theta - data.reference_model.theta
    ) / np.linalg.norm(data.reference_model.theta)
    # Every seed, not only the mean, must end closer to theta_c than the
    # dirty model after cleaning 20% of the records.
    assert np.all(errors < dirty_error), (errors, dirty_error)


def test_importance_sampling_beats_uniform(prepared):
    engine, data = prepared
    importance = _final_errors(engine, data, floor=0.05)
    uniform = _final_errors(engine, data, floor=1.0)
    # floor = 1 draws uniformly with the same update: the ablation without
    # importance sampling.  Averaged over the same 5 seeds it must end
    # farther from theta_c.
    assert importance.mean() < uniform.mean(), (importance, uniform)


def test_same_seed_gives_same_model(prepared):
    engine, data = prepared
    engine.floor, engine.seed = 0.05, 11
    first = engine.run(data)
    second = engine.run(data)
    np.testing.assert_array_equal(first.model.theta, second.model.theta)
    assert first.cleaned.column("id").to_pylist() == second.cleaned.column("id").to_pylist()


def test_budget_limits_records_cleaned(prepared):
    engine, data = prepared
    engine.budget, engine.seed = 45, 0
    try:
        result = engine.run(data)
    finally:
        engine.budget = 200
    assert result.n_cleaned == 45
    assert [h["cleaned"] for h in result.history] == [20, 40, 45] or result.history[-1]["cleaned"] == 45


@pytest.mark.parametrize(
    "options, message",
    [
        ({"budget": 0}, "budget must be a positive integer, got 0"),
        ({"batch_size": 2.5}, "batch_size must be a positive integer, got 2.5"),
        ({"floor": 0}, r"floor must be a number in \(0, 1\], got 0"),
        ({"tol": -1}, "tol must be a number >= 0, got -1"),
        ({"target": "high"}, r"target must be a number \(test accuracy or RMSE\), got 'high'"),
        ({"preconditioner": "bfgs"}, "preconditioner must be one of hessian, diagonal, none, got 'bfgs'"),
        ({"key": ""}, "key must name a column, got ''"),
    ],
)
def test_invalid_parameters_are_rejected(spark, options, message):
    clean_df = spark.createDataFrame(make_tables(n=10)[1])
    arguments = {
        "key": "id",
        "features": FeatureSpec(label="label", numeric=["x0"]),
        "loss": LogisticLoss(),
        "cleaner": OracleCleaner(clean_df, "id"),
        "budget": 10,
    }
    arguments.update(options)
    with pytest.raises(ValueError, match=message):
        ActiveClean(**arguments)


def test_missing_column_and_duplicate_key_are_rejected(spark):
    dirty, clean = make_tables(n=20)
    clean_df = spark.createDataFrame(clean)
    engine = ActiveClean(
        key="id", features=FeatureSpec(label="label", numeric=["x9"]), loss=LogisticLoss(),
        cleaner=OracleCleaner(clean_df, "id"), budget=5,
    )
    with pytest.raises(ValueError, match=r"input table has no column 'x9' \(a feature\)"):
        engine.prepare(spark.createDataFrame(dirty))
    engine.features = FeatureSpec(label="label", numeric=["x0"])
    duplicated = spark.createDataFrame(dirty.assign(id=dirty["id"] % 5))
    with pytest.raises(ValueError, match="key column 'id' is not unique"):
        engine.prepare(duplicated)


class SquaredError(Loss):
    """A user-defined loss written against the base protocol only."""

    name = "squared_error"
    task = "regression"

    def n_parameters(self, n_features):
        return n_features + 1

    def _residuals(self, X, y, theta):
        return X @ theta[:-1] + theta[-1] - y

    def losses(self, X, y, theta):
        return 0.5 * self._residuals(X, y, theta) ** 2

    def gradients(self, X, y, theta):
        residuals = self._residuals(X, y, theta)
        return np.hstack([X * residuals[:, None], residuals[:, None]])

    def predict(self, X, theta):
        return X @ theta[:-1] + theta[-1]


def test_user_defined_loss_runs_without_preconditioner(spark, caplog):
    dirty, clean = make_tables(n=300, rate=0.1, seed=4)
    clean_df = spark.createDataFrame(clean)
    engine = ActiveClean(
        key="id",
        features=FeatureSpec(label="label", numeric=["x0", "x1"], task="regression"),
        loss=SquaredError(),
        cleaner=OracleCleaner(clean_df, "id"),
        budget=40,
        batch_size=20,
        num_partitions=2,
    )
    with caplog.at_level("WARNING", logger="activeclean_spark.engine"):
        result = engine.fit(spark.createDataFrame(dirty), reference=clean_df)
    assert "defines no curvature_sums" in caplog.text
    assert result.n_cleaned == 40
    assert not np.array_equal(result.model.theta, result.dirty_model.theta)
    assert np.all(np.isfinite(result.model.theta))


def two_columns(table):
    """Featurize function for the engine test: x0 and x1 as they are."""
    X = np.column_stack([table.column(name).to_numpy(zero_copy_only=False) for name in ("x0", "x1")])
    return X, table.column("label").to_numpy(zero_copy_only=False).astype(float)


def test_featurize_function_runs_and_saves(spark, tmp_path):
    dirty, clean = make_tables(n=300, rate=0.1, seed=4)
    clean_df = spark.createDataFrame(clean)
    engine = ActiveClean(
        key="id",
        features=FunctionFeaturizer(two_columns, ["x0", "x1"], columns=["x0", "x1"], label="label"),
        loss=LogisticLoss(reg=0.01),
        cleaner=OracleCleaner(clean_df, "id"),
        budget=40,
        batch_size=20,
        num_partitions=2,
    )
    result = engine.fit(spark.createDataFrame(dirty), output_dir=str(tmp_path / "out"))
    assert list(result.model.coefficients) == ["x0", "x1"]
    loaded = ActiveCleanModel.load(str(tmp_path / "out"))
    np.testing.assert_array_equal(loaded.theta, result.model.theta)


def test_user_loss_model_loads(tmp_path):
    featurizer = FunctionFeaturizer(two_columns, ["x0", "x1"], columns=["x0", "x1"], label="label", task="regression")
    ActiveCleanModel(np.array([1.0, 2.0, 0.5]), featurizer, SquaredError()).save(str(tmp_path))
    loaded = ActiveCleanModel.load(str(tmp_path))
    assert isinstance(loaded.loss, SquaredError)
    np.testing.assert_array_equal(loaded.theta, [1.0, 2.0, 0.5])


def test_partition_count_keeps_blocks_small(spark, monkeypatch):
    from activeclean_spark import engine as engine_module

    dirty, clean = make_tables(n=200, seed=3)
    df = spark.createDataFrame(dirty)
    engine = make_engine(clean, num_partitions=None)
    parallelism = spark.sparkContext.defaultParallelism
    assert engine._partition_count(df, df, engine.features, False) == parallelism
    # With room for 50 records per block, 200 records need 4 partitions, more than the cores.
    per_row = engine_module._row_bytes(df.schema, engine.features)
    monkeypatch.setattr(engine_module, "BLOCK_BYTES", 50 * per_row)
    assert engine._partition_count(df, df, engine.features, False) == max(parallelism, 4)
    assert engine.clone(num_partitions=3)._partition_count(df, df, engine.features, False) == 3
