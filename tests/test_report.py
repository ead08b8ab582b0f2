"""Tests of the comparison report on small hand-built results tables."""

from __future__ import annotations

import ast
import math
import os
import sys

import numpy as np
import pandas as pd
import pytest

from activeclean_spark import report

CLASSIFICATION = "toy, systematic 10%"
REGRESSION = "toy_regression, random 20%"

# Test accuracy per (method, seed) for the classification scenario.  The clean
# model scores 0.90, so 1% tolerance needs accuracy >= 0.891.
ACCURACY_CURVES = {
    ("activeclean", 0): ([0, 10, 20, 30], [0.80, 0.89, 0.90, 0.90]),  # reaches at 20
    ("activeclean", 1): ([0, 10, 20, 30], [0.80, 0.892, 0.90, 0.90]),  # reaches at 10
    ("activeclean", 2): ([0, 10, 20, 30], [0.80, 0.85, 0.88, 0.895]),  # reaches at 30
    ("uniform", 0): ([0, 10, 20, 30], [0.80, 0.82, 0.85, 0.88]),  # never reaches
    ("uniform", 1): ([0, 10, 20, 30], [0.80, 0.83, 0.86, 0.892]),  # reaches at 30
    ("uniform", 2): ([0, 10, 20, 25], [0.80, 0.84, 0.87, 0.893]),  # smaller last batch, reaches at 25
}

# Test RMSE for the regression scenario.  The clean model scores 2.0, so 1%
# tolerance needs RMSE <= 2.02.
RMSE_CURVES = {
    ("activeclean", 0): ([0, 50, 100], [3.0, 2.01, 2.0]),  # reaches at 50
    ("activeclean", 1): ([0, 50, 100], [3.0, 2.5, 2.015]),  # reaches at 100
    ("activeclean", 2): ([0, 50, 100], [3.0, 2.0, 1.99]),  # reaches at 50, below the clean RMSE
    ("uniform", 0): ([0, 50, 100], [3.0, 2.6, 2.3]),
    ("uniform", 1): ([0, 50, 100], [3.0, 2.7, 2.4]),
    ("uniform", 2): ([0, 50, 100], [3.0, 2.5, 2.09]),
}


def _rows(scenario, dataset, corruption, rate, metric, clean, dirty, curves, with_detector):
    rows = []
    for (method, seed), (records, metrics) in curves.items():
        for step, (cleaned, value) in enumerate(zip(records, metrics)):
            detector = with_detector and method == "activeclean"
            rows.append(
                {
                    "dataset": dataset,
                    "corruption": corruption,
                    "rate": rate,
                    "scenario": scenario,
                    "method": method,
                    "seed": seed,
                    "records_cleaned": cleaned,
                    # Model error falls linearly with the records cleaned: 0.5 at 0, 0.2 at 30.
                    "model_error": 0.5 - 0.01 * cleaned if with_detector else math.nan,
                    "metric": metric,
                    "test_metric": value,
                    "clean_metric": clean,
                    "dirty_metric": dirty,
                    "precision": 0.8 + 0.01 * seed if detector else math.nan,
                    "recall": 0.6 + 0.01 * step if detector else math.nan,
                    "seconds": 1.5 * (step + 1),
                }
            )
    return rows


def make_results():
    """Return a classification scenario with model error and detector, then an RMSE scenario without."""
    rows = _rows(CLASSIFICATION, "toy", "systematic", 0.1, "accuracy", 0.90, 0.80, ACCURACY_CURVES, True)
    rows += _rows(REGRESSION, "toy_regression", "random", 0.2, "rmse", 2.0, 3.0, RMSE_CURVES, False)
    return pd.DataFrame(rows)


def _reach_by_run(frame, tolerance=0.01):
    table = report.records_to_reach(frame, tolerance)
    return {(row.scenario, row.method, row.seed): (row.records, row.max_records) for row in table.itertuples()}


def _summary_row(summary, scenario, method):
    rows = summary[(summary["scenario"] == scenario) & (summary["method"] == method)]
    assert len(rows) == 1
    return rows.iloc[0]


# ---------------------------------------------------------------------------
# records_to_reach
# ---------------------------------------------------------------------------


def test_records_to_reach_accuracy():
    reach = _reach_by_run(make_results())

    assert reach[(CLASSIFICATION, "activeclean", 0)] == (20.0, 30)
    assert reach[(CLASSIFICATION, "activeclean", 1)] == (10.0, 30)
    assert reach[(CLASSIFICATION, "activeclean", 2)] == (30.0, 30)
    assert reach[(CLASSIFICATION, "uniform", 1)] == (30.0, 30)
    assert reach[(CLASSIFICATION, "uniform", 2)] == (25.0, 25)


def test_records_to_reach_never_reached():
    reach = _reach_by_run(make_results())

    records, max_records = reach[(CLASSIFICATION, "uniform", 0)]
    assert math.isnan(records)
    assert max_records == 30


def test_records_to_reach_rmse():
    reach = _reach_by_run(make_results())

    assert reach[(REGRESSION, "activeclean", 0)] == (50.0, 100)
    assert reach[(REGRESSION, "activeclean", 1)] == (100.0, 100)
    assert reach[(REGRESSION, "activeclean", 2)] == (50.0, 100)
    for seed in range(3):
        records, max_records = reach[(REGRESSION, "uniform", seed)]
        assert math.isnan(records), f"uniform seed {seed} never gets within 1% of the clean RMSE"
        assert max_records == 100


def test_records_to_reach_columns():
    table = report.records_to_reach(make_results())

    assert list(table.columns) == ["scenario", "method", "seed", "records", "max_records", "halving_records"]
    assert table["records"].dtype == np.float64
    assert len(table) == 12


def test_records_to_reach_wider_tolerance():
    # 5% tolerance: accuracy >= 0.855 and RMSE <= 2.1.
    reach = _reach_by_run(make_results(), tolerance=0.05)

    assert reach[(CLASSIFICATION, "activeclean", 2)][0] == 20.0
    assert reach[(CLASSIFICATION, "uniform", 0)][0] == 30.0
    assert reach[(REGRESSION, "uniform", 2)][0] == 100.0
    assert math.isnan(reach[(REGRESSION, "uniform", 0)][0])


def test_records_to_reach_zero_tolerance():
    reach = _reach_by_run(make_results(), tolerance=0.0)

    assert reach[(CLASSIFICATION, "activeclean", 0)][0] == 20.0
    assert math.isnan(reach[(CLASSIFICATION, "activeclean", 2)][0])
    assert reach[(REGRESSION, "activeclean", 2)][0] == 50.0


def test_records_to_reach_ignores_row_order():
    frame = make_results()
    expected = _reach_by_run(frame)

    shuffled = _reach_by_run(frame.sample(frac=1.0, random_state=3))

    assert shuffled.keys() == expected.keys()
    for key, (records, max_records) in expected.items():
        shuffled_records, shuffled_max = shuffled[key]
        assert shuffled_max == max_records, key
        assert shuffled_records == records or (math.isnan(records) and math.isnan(shuffled_records)), key


def test_records_to_reach_nan_metric():
    frame = make_results()
    frame.loc[(frame["method"] == "activeclean") & (frame["seed"] == 1) & (frame["records_cleaned"] == 10),
              "test_metric"] = math.nan

    reach = _reach_by_run(frame)

    assert reach[(CLASSIFICATION, "activeclean", 1)][0] == 20.0


# ---------------------------------------------------------------------------
# summarize
# ---------------------------------------------------------------------------


def test_summarize_records_all_reached():
    row = _summary_row(report.summarize(make_results()), CLASSIFICATION, "activeclean")

    assert row["seeds"] == 3
    assert row["reached"] == 3
    assert row["mean_records"] == pytest.approx(20.0)
    assert row["std_records"] == pytest.approx(10.0)


def test_summarize_counts_unreached_at_max():
    row = _summary_row(report.summarize(make_results()), CLASSIFICATION, "uniform")

    # Seed 0 never reaches and counts as its 30 records, with 30 and 25 from the other seeds.
    assert row["seeds"] == 3
    assert row["reached"] == 2
    assert row["mean_records"] == pytest.approx(85 / 3)
    assert row["std_records"] == pytest.approx(np.std([30, 30, 25], ddof=1))


def test_summarize_none_reached():
    row = _summary_row(report.summarize(make_results()), REGRESSION, "uniform")

    assert row["reached"] == 0
    assert row["mean_records"] == pytest.approx(100.0)
    assert row["std_records"] == pytest.approx(0.0)


def test_summarize_final_common_budget():
    summary = report.summarize(make_results())

    # The uniform seed 2 run stops at 25, so the classification scenario is compared at 25 records.
    assert set(summary.loc[summary["scenario"] == CLASSIFICATION, "final_records"]) == {25}
    assert set(summary.loc[summary["scenario"] == REGRESSION, "final_records"]) == {100}


def test_summarize_final_interpolated():
    summary = report.summarize(make_results())
    activeclean = _summary_row(summary, CLASSIFICATION, "activeclean")
    uniform = _summary_row(summary, CLASSIFICATION, "uniform")

    # Halfway between the points at 20 and 30 records for the 0..30 runs.
    activeclean_at_25 = [0.90, 0.90, (0.88 + 0.895) / 2]
    uniform_at_25 = [(0.85 + 0.88) / 2, (0.86 + 0.892) / 2, 0.893]
    assert activeclean["final_metric_mean"] == pytest.approx(np.mean(activeclean_at_25))
    assert activeclean["final_metric_std"] == pytest.approx(np.std(activeclean_at_25, ddof=1))
    assert uniform["final_metric_mean"] == pytest.approx(np.mean(uniform_at_25))
    assert uniform["final_metric_std"] == pytest.approx(np.std(uniform_at_25, ddof=1))

    # Model error is 0.5 - 0.01 * records for every run, so 0.25 at 25 records.
    assert activeclean["final_model_error_mean"] == pytest.approx(0.25)
    assert activeclean["final_model_error_std"] == pytest.approx(0.0)


def test_summarize_precision_recall():
    summary = report.summarize(make_results())
    activeclean = _summary_row(summary, CLASSIFICATION, "activeclean")
    uniform = _summary_row(summary, CLASSIFICATION, "uniform")

    # Precision is 0.80, 0.81, 0.82 by seed.  Recall at 25 is halfway between steps 2 and 3.
    assert activeclean["final_precision_mean"] == pytest.approx(0.81)
    assert activeclean["final_recall_mean"] == pytest.approx(0.625)
    assert math.isnan(uniform["final_precision_mean"])
    assert math.isnan(uniform["final_recall_mean"])


def test_summarize_regression_final_values():
    row = _summary_row(report.summarize(make_results()), REGRESSION, "activeclean")

    assert row["metric"] == "rmse"
    assert row["final_metric_mean"] == pytest.approx(np.mean([2.0, 2.015, 1.99]))
    assert math.isnan(row["final_model_error_mean"])


def test_summarize_first_appearance_order():
    frame = make_results()
    # Uniform rows first, with the regression scenario interleaved before the rest.
    reordered = pd.concat(
        [
            frame[(frame["method"] == "uniform") & (frame["scenario"] == CLASSIFICATION)],
            frame[frame["scenario"] == REGRESSION],
            frame[(frame["method"] == "activeclean") & (frame["scenario"] == CLASSIFICATION)],
        ]
    )

    summary = report.summarize(reordered)

    assert list(zip(summary["scenario"], summary["method"])) == [
        (CLASSIFICATION, "uniform"),
        (CLASSIFICATION, "activeclean"),
        (REGRESSION, "uniform"),
        (REGRESSION, "activeclean"),
    ]


def test_summarize_single_seed_std():
    frame = make_results()
    row = _summary_row(report.summarize(frame[frame["seed"] == 0]), CLASSIFICATION, "activeclean")

    assert row["seeds"] == 1
    assert row["mean_records"] == pytest.approx(20.0)
    assert math.isnan(row["std_records"])


# ---------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------


def test_missing_column_named():
    frame = make_results().drop(columns=["clean_metric"])

    with pytest.raises(ValueError, match="missing column.*clean_metric") as error:
        report.summarize(frame)
    assert "columns present: dataset" in str(error.value)


def test_precision_recall_optional():
    frame = make_results().drop(columns=["precision", "recall"])

    row = _summary_row(report.summarize(frame), CLASSIFICATION, "activeclean")

    assert math.isnan(row["final_precision_mean"])


def test_unknown_metric_rejected():
    frame = make_results()
    frame.loc[frame["scenario"] == REGRESSION, "metric"] = "r2"

    with pytest.raises(ValueError, match="unknown metric name.*'r2'.*accuracy"):
        report.records_to_reach(frame)


def test_mixed_metrics_rejected():
    frame = make_results()
    frame.loc[(frame["scenario"] == REGRESSION) & (frame["method"] == "uniform"), "metric"] = "mae"

    with pytest.raises(ValueError, match="mixes metrics mae, rmse"):
        report.records_to_reach(frame)


def test_duplicate_points_rejected():
    frame = make_results()
    frame = pd.concat([frame, frame.iloc[[0]]])

    with pytest.raises(ValueError, match="share a scenario, method, seed and records_cleaned.*unique name"):
        report.records_to_reach(frame)


def test_empty_key_rejected():
    frame = make_results()
    frame.loc[3, "method"] = None

    with pytest.raises(ValueError, match="column 'method' has 1 empty value"):
        report.records_to_reach(frame)


def test_non_numeric_metric_rejected():
    frame = make_results()
    frame["test_metric"] = frame["test_metric"].astype(str)

    with pytest.raises(TypeError, match="column 'test_metric' must be numeric"):
        report.records_to_reach(frame)


def test_invalid_tolerance_rejected():
    frame = make_results()

    with pytest.raises(ValueError, match=r"tolerance must be a relative fraction in \[0, 1\)"):
        report.records_to_reach(frame, tolerance=1.5)
    with pytest.raises(ValueError, match="tolerance"):
        report.summarize(frame, tolerance=-0.01)
    with pytest.raises(TypeError, match="tolerance must be a number"):
        report.records_to_reach(frame, tolerance="1%")


def test_not_a_dataframe_rejected():
    with pytest.raises(TypeError, match="pandas DataFrame, got list"):
        report.records_to_reach([{"scenario": "a"}])


def test_empty_table_rejected():
    with pytest.raises(ValueError, match="no rows"):
        report.records_to_reach(make_results().iloc[0:0])


# ---------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------


def test_plot_filename_safe():
    assert report.plot_filename("breast_cancer, systematic 5%") == "breast_cancer_systematic_5.png"
    assert report.plot_filename("Adult / Real errors") == "adult_real_errors.png"


def test_plot_filename_without_letters_rejected():
    with pytest.raises(ValueError, match="no letter or digit"):
        report.plot_filename("%%")


def test_plot_curves_writes_png(tmp_path):
    paths = report.plot_curves(make_results(), tmp_path / "plots")

    assert paths == [
        os.path.join(tmp_path / "plots", "toy_systematic_10.png"),
        os.path.join(tmp_path / "plots", "toy_regression_random_20.png"),
    ]
    for path in paths:
        with open(path, "rb") as file:
            assert file.read(8) == b"\x89PNG\r\n\x1a\n", path
        assert os.path.getsize(path) > 1000, path


def test_plot_curves_filename_collision(tmp_path):
    frame = make_results()
    frame.loc[frame["scenario"] == REGRESSION, "scenario"] = "toy: systematic, 10%"

    with pytest.raises(ValueError, match="both map to the plot file 'toy_systematic_10.png'"):
        report.plot_curves(frame, tmp_path)


def test_plot_curves_without_matplotlib(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)

    with pytest.raises(ImportError, match=r"pip install 'activeclean_spark\[compare\]'"):
        report.plot_curves(make_results(), tmp_path)


def test_align_seeds_shared_grid():
    frame = make_results()
    runs = frame[(frame["scenario"] == CLASSIFICATION) & (frame["method"] == "activeclean")]

    grid, values = report._align_seeds(runs, ["test_metric"])

    np.testing.assert_array_equal(grid, [0, 10, 20, 30])
    np.testing.assert_allclose(values["test_metric"][1], [0.80, 0.892, 0.90, 0.90])


def test_align_seeds_union_grid():
    frame = make_results()
    runs = frame[(frame["scenario"] == CLASSIFICATION) & (frame["method"] == "uniform")]

    grid, values = report._align_seeds(runs, ["test_metric"])

    np.testing.assert_array_equal(grid, [0, 10, 20, 25, 30])
    np.testing.assert_allclose(values["test_metric"][0], [0.80, 0.82, 0.85, 0.865, 0.88])
    np.testing.assert_allclose(values["test_metric"][2][:4], [0.80, 0.84, 0.87, 0.893])
    assert math.isnan(values["test_metric"][2][4]), "seed 2 stops at 25 and is not extrapolated"


def test_report_imports_no_pyspark():
    with open(report.__file__, encoding="utf-8") as file:
        tree = ast.parse(file.read())

    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert "pyspark" not in imported


# ---------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------


def test_markdown_classification_rows():
    text = report.results_markdown(make_results())
    lines = text.splitlines()

    assert "## toy, systematic 10%" in lines
    assert "Test accuracy: dirty model 0.800 ± 0.000, clean model 0.900 ± 0.000 (over 3 seeds)." in lines
    assert (
        "| method | records cleaned to reach the clean accuracy within 1% | records cleaned to halve the dirty model's error | model error at 25 records "
        "| test accuracy at 25 records | precision / recall at 25 records |"
    ) in lines
    assert "| activeclean | 20 ± 10 (3/3 seeds reached) | 30 ± 0 (3/3) | 0.250 ± 0.000 | 0.896 ± 0.007 | 0.810 / 0.625 |" in lines
    assert "| uniform | >= 28.3 ± 2.9 (2/3 seeds reached) | 28.3 ± 2.9 (3/3) | 0.250 ± 0.000 | 0.878 ± 0.014 | - |" in lines


def test_markdown_regression_rows():
    text = report.results_markdown(make_results())
    lines = text.splitlines()

    assert "## toy_regression, random 20%" in lines
    assert "Test rmse: dirty model 3.000 ± 0.000, clean model 2.000 ± 0.000 (over 3 seeds)." in lines
    # No detector in this scenario, so no precision / recall column.
    assert (
        "| method | records cleaned to reach the clean rmse within 1% | records cleaned to halve the dirty model's error | model error at 100 records "
        "| test rmse at 100 records |"
    ) in lines
    assert "| activeclean | 66.7 ± 28.9 (3/3 seeds reached) | >= 100 ± 0 (0/3) | n/a | 2.002 ± 0.013 |" in lines
    assert "| uniform | >= 100 ± 0 (0/3 seeds reached) | >= 100 ± 0 (0/3) | n/a | 2.263 ± 0.158 |" in lines


def test_markdown_scenario_order():
    text = report.results_markdown(make_results())

    assert text.startswith("# Method comparison\n")
    assert text.index("## toy, systematic 10%") < text.index("## toy_regression, random 20%")
    assert "![" not in text


def test_markdown_tolerance_in_header():
    text = report.results_markdown(make_results(), tolerance=0.005)

    assert "reach the clean accuracy within 0.5%" in text


def test_markdown_image_links():
    text = report.results_markdown(make_results(), image_directory="plots")

    assert "![toy, systematic 10%](plots/toy_systematic_10.png)" in text.splitlines()
    assert "![toy_regression, random 20%](plots/toy_regression_random_20.png)" in text.splitlines()


def test_markdown_single_seed_no_spread():
    frame = make_results()
    text = report.results_markdown(frame[frame["seed"] == 1])

    assert "| uniform | 30 (1/1 seeds reached) | 30 (1/1) | 0.200 | 0.892 | - |" in text.splitlines()
