"""A small run of the iteration benchmark, so that `make bench` keeps working; no time is asserted."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "iteration.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("iteration_benchmark", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_measurement_runs_and_reports(spark, bench):
    rows, features = 3000, 4
    engine = bench.engine_part(spark, rows, features, iterations=2, warmup=1)
    assert engine["iterations"] == 2
    assert set(engine["phases"]) == set(bench.PHASES)
    case = {
        "engine": engine,
        "numpy": bench.numpy_part(rows, features, repeat=2),
        "naive": bench.naive_part(spark, rows, features, repeat=1),
        "mllib": bench.mllib_part(spark, rows, features, engine["featurizer"]),
    }
    values = bench.derived(case)
    # Both fits minimize the same objective to the same tolerance, so they meet at one optimum.
    assert values["coefficient_difference"] < 1e-4
    assert all(value > 0 for value in values.values())
    memory = engine["memory"]
    assert memory["driver_python"] > 0
    assert memory["jvm"] > 0
    report = bench.markdown([case], "smoke run")
    assert "| 3e3 x 4 |" in report
    # Only the Spark-cache-only engine was left out.
    assert report.count("not measured") == 1
