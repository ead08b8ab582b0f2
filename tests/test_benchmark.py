"""A small run of the iteration benchmark, so that `make bench` keeps working; no time is asserted."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "iteration.py"
PARTITIONS = 2


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
    text = {"engine": bench.engine_part(spark, 2000, 3, 5, iterations=2, warmup=1),
            "numpy": bench.numpy_part(2000, 3, 5, repeat=2)}
    assert text["engine"]["parameters"] > 1 << 18
    # Three numeric values and at most five words per record, 12 bytes each and a row offset.
    assert text["engine"]["feature_entries"] <= 8 * 2000
    assert text["engine"]["feature_bytes"] <= 12 * 8 * 2000 + 4 * (2000 + PARTITIONS)
    report = bench.markdown([case, text], "smoke run")
    assert "| 3e3 x 4 |" in report
    assert "| 2e3 x 3 + text (5 words, 2^18) |" in report
    # Left out: the Spark-cache-only engine of the first case; Spark cache, naive and MLlib of the text case.
    assert report.count("not measured") == 6
