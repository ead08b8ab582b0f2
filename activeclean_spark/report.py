"""Plots and a Markdown summary of a method comparison.

The input is the comparison's tidy results table, with one row per scenario,
method, seed and point on the cleaning curve.  The required columns are
``scenario``, ``method``, ``seed``, ``records_cleaned``, ``metric`` (the name
of the test metric), ``test_metric``, ``clean_metric`` (the fully clean model's
test metric for that scenario and seed), ``dirty_metric`` and ``model_error``.
``precision`` and ``recall`` are optional, and columns such as ``dataset``,
``corruption``, ``rate`` and ``seconds`` are carried along but not used.

This module needs pandas and numpy, and matplotlib for the plots only.  It does
not import pyspark.
"""

from __future__ import annotations

import math
import os
import pathlib
import re
import urllib.parse

import numpy as np
import pandas as pd

__all__ = ["plot_curves", "plot_filename", "records_to_reach", "results_markdown", "summarize"]

# Metric names by direction.  A scenario's target is its clean model's metric.
HIGHER_IS_BETTER = frozenset({"accuracy", "f1"})
LOWER_IS_BETTER = frozenset({"rmse", "mae"})

RUN_KEYS = ["scenario", "method", "seed"]
POINT_KEYS = RUN_KEYS + ["records_cleaned"]
NUMERIC_COLUMNS = frozenset(
    {"records_cleaned", "test_metric", "clean_metric", "dirty_metric", "model_error", "precision", "recall"}
)
OPTIONAL_COLUMNS = ("precision", "recall")

REACH_COLUMNS = POINT_KEYS + ["metric", "test_metric", "clean_metric"]
SUMMARY_COLUMNS = REACH_COLUMNS + ["model_error"]
PLOT_COLUMNS = SUMMARY_COLUMNS
MARKDOWN_COLUMNS = SUMMARY_COLUMNS + ["dirty_metric"]

INSTALL_HINT = "pip install 'activeclean_spark[compare]'"


# ---------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------


def _check_tolerance(tolerance) -> float:
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float, np.integer, np.floating)):
        raise TypeError(f"tolerance must be a number such as 0.01 for 1%, got {tolerance!r}")
    if not 0 <= tolerance < 1:
        raise ValueError(f"tolerance must be a relative fraction in [0, 1), such as 0.01 for 1%, got {tolerance!r}")
    return float(tolerance)


def _validated(frame, required: list[str]) -> pd.DataFrame:
    """Check the results table and return a copy with the optional columns present."""
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"expected the comparison results as a pandas DataFrame, got {type(frame).__name__}")

    missing = [column for column in required if column not in frame.columns]
    if missing:
        present = ", ".join(map(str, frame.columns)) or "none"
        raise ValueError(f"results table is missing column(s) {', '.join(missing)}; columns present: {present}")
    if frame.empty:
        raise ValueError("results table has no rows")

    for column in POINT_KEYS:
        empty = int(frame[column].isna().sum())
        if empty:
            raise ValueError(
                f"column {column!r} has {empty} empty value(s); every row needs a scenario, method, seed and "
                "records_cleaned"
            )
    for column in required:
        if column in NUMERIC_COLUMNS and not pd.api.types.is_numeric_dtype(frame[column]):
            raise TypeError(
                f"column {column!r} must be numeric but has dtype {frame[column].dtype}; "
                "convert it with pandas.to_numeric or fix the non-numeric entries"
            )

    duplicated = frame.duplicated(POINT_KEYS, keep=False)
    if duplicated.any():
        first = frame.loc[duplicated, POINT_KEYS].iloc[0]
        raise ValueError(
            f"results table has {int(duplicated.sum())} rows that share a scenario, method, seed and records_cleaned, "
            f"for example scenario={first['scenario']!r}, method={first['method']!r}, seed={first['seed']!r}, "
            f"records_cleaned={first['records_cleaned']!r}; give each scenario a unique name"
        )

    known = HIGHER_IS_BETTER | LOWER_IS_BETTER
    unknown = sorted(set(frame["metric"].astype(str)) - known)
    if unknown:
        raise ValueError(
            f"column 'metric' has unknown metric name(s) {', '.join(map(repr, unknown))}; "
            f"expected one of {', '.join(sorted(known))}"
        )
    metric_counts = frame.groupby("scenario", sort=False)["metric"].nunique()
    mixed = metric_counts[metric_counts > 1]
    if not mixed.empty:
        raise ValueError(
            f"scenario {mixed.index[0]!r} mixes metrics "
            f"{', '.join(sorted(frame.loc[frame['scenario'] == mixed.index[0], 'metric'].unique()))}; "
            "each scenario needs one test metric"
        )

    # A fresh index: tables concatenated from several runs repeat their labels.
    frame = frame.reset_index(drop=True)
    for column in OPTIONAL_COLUMNS:
        if column not in frame.columns:
            frame[column] = np.nan
    return frame


# ---------------------------------------------------------------------------
# Ordering and per-run helpers
# ---------------------------------------------------------------------------


def _first_appearance(values: pd.Series) -> list:
    return list(pd.unique(values))


def _in_display_order(table: pd.DataFrame, frame: pd.DataFrame) -> pd.DataFrame:
    """Sort ``table`` by the first appearance of scenario, then method, in ``frame``.

    The sort is stable, so rows that share both keep their order.
    """
    scenario_rank = {name: rank for rank, name in enumerate(_first_appearance(frame["scenario"]))}
    method_rank = {name: rank for rank, name in enumerate(_first_appearance(frame["method"]))}
    order = np.lexsort((table["method"].map(method_rank).to_numpy(), table["scenario"].map(scenario_rank).to_numpy()))
    return table.iloc[order].reset_index(drop=True)


def _runs(frame: pd.DataFrame):
    """Yield ``(scenario, method, seed, run)`` with each run's rows sorted by records cleaned."""
    for (scenario, method, seed), run in frame.groupby(RUN_KEYS, sort=False):
        yield scenario, method, seed, run.sort_values("records_cleaned")


def _target_reached(frame: pd.DataFrame, tolerance: float) -> np.ndarray:
    """Return, per row, whether the test metric is within ``tolerance`` of the clean model's metric.

    A NaN test or clean metric never counts as reached.
    """
    test = frame["test_metric"].to_numpy(dtype=float)
    clean = frame["clean_metric"].to_numpy(dtype=float)
    higher_is_better = frame["metric"].isin(HIGHER_IS_BETTER).to_numpy()
    with np.errstate(invalid="ignore"):
        return np.where(higher_is_better, test >= clean * (1 - tolerance), test <= clean * (1 + tolerance))


def _interpolate(x: np.ndarray, y: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Interpolate ``y(x)`` linearly at ``points``, through the finite ``y`` only.

    Points outside the range of the finite values are NaN rather than extrapolated.
    """
    result = np.full(points.shape, np.nan)
    finite = np.isfinite(y)
    if not finite.any():
        return result
    x, y = x[finite], y[finite]
    inside = (points >= x[0]) & (points <= x[-1])
    result[inside] = np.interp(points[inside], x, y)
    return result


def _dirty_model_errors(frame: pd.DataFrame) -> pd.Series:
    """Return the dirty model's error per (scenario, seed): the model error of any run at 0 records cleaned."""
    start = frame[frame["records_cleaned"] == 0]
    return start.groupby(["scenario", "seed"])["model_error"].first()


def _reach_table(frame: pd.DataFrame, tolerance: float) -> pd.DataFrame:
    reached = pd.Series(_target_reached(frame, tolerance), index=frame.index)
    dirty_errors = _dirty_model_errors(frame)
    rows = []
    for scenario, method, seed, run in _runs(frame):
        records = run.loc[reached[run.index], "records_cleaned"]
        dirty_error = dirty_errors.get((scenario, seed), math.nan)
        halved = run.loc[run["model_error"] <= dirty_error / 2, "records_cleaned"]
        rows.append(
            {
                "scenario": scenario,
                "method": method,
                "seed": seed,
                "records": float(records.min()) if len(records) else math.nan,
                "max_records": run["records_cleaned"].max(),
                "halving_records": float(halved.min()) if len(halved) else math.nan,
            }
        )
    return _in_display_order(pd.DataFrame(rows), frame)


def _final_points(frame: pd.DataFrame) -> pd.DataFrame:
    """Return each run's values at its scenario's final common point.

    The final common point is the largest ``records_cleaned`` that every run of
    the scenario reached, so all methods are compared after the same budget.
    A run without a row at that point is interpolated linearly between its two
    neighboring rows.
    """
    common = frame.groupby(RUN_KEYS, sort=False)["records_cleaned"].max().groupby(level="scenario").min()
    columns = ["model_error", "test_metric", "precision", "recall"]
    rows = []
    for scenario, method, seed, run in _runs(frame):
        point = np.array([float(common[scenario])])
        x = run["records_cleaned"].to_numpy(dtype=float)
        row = {"scenario": scenario, "method": method, "seed": seed, "final_records": common[scenario]}
        for column in columns:
            row[column] = _interpolate(x, run[column].to_numpy(dtype=float), point)[0]
        rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------


def records_to_reach(frame: pd.DataFrame, tolerance: float = 0.01) -> pd.DataFrame:
    """Find, per run, the records cleaned before the test metric reaches the clean model's.

    A run is one (scenario, method, seed).  Its target is met at the first point
    where the test metric is within ``tolerance`` (relative) of ``clean_metric``:
    ``test_metric >= clean_metric * (1 - tolerance)`` for accuracy and f1, and
    ``test_metric <= clean_metric * (1 + tolerance)`` for rmse and mae.

    Parameters
    ----------
    frame : pandas.DataFrame
        Comparison results, one row per scenario, method, seed and curve point.
    tolerance : float, default=0.01
        Relative tolerance, a fraction in [0, 1).

    Returns
    -------
    pandas.DataFrame
        Columns ``scenario``, ``method``, ``seed``, ``records`` (float, the
        smallest ``records_cleaned`` that met the target, NaN if the run never
        met it) and ``max_records`` (the run's largest ``records_cleaned``).
        Rows follow the first appearance of scenarios and methods in ``frame``.

    Raises
    ------
    ValueError
        If a required column is missing, a metric name is unknown, a scenario
        mixes metrics or a curve point appears twice.
    """
    tolerance = _check_tolerance(tolerance)
    frame = _validated(frame, REACH_COLUMNS)
    return _reach_table(frame, tolerance)


def summarize(frame: pd.DataFrame, tolerance: float = 0.01) -> pd.DataFrame:
    """Aggregate each (scenario, method) over its seeds.

    A seed that never meets the target counts as its ``max_records``, so
    ``mean_records`` is a lower bound whenever ``reached < seeds``.  The final
    values are taken at the scenario's largest ``records_cleaned`` that every
    run reached (``final_records``), interpolating linearly within a run that
    has no row there.  Standard deviations use ``ddof=1`` and are NaN for a
    single seed.  Means skip NaN values.

    Parameters
    ----------
    frame : pandas.DataFrame
        Comparison results, one row per scenario, method, seed and curve point.
    tolerance : float, default=0.01
        Relative tolerance of :func:`records_to_reach`.

    Returns
    -------
    pandas.DataFrame
        One row per scenario and method, in order of first appearance, with
        columns ``scenario``, ``method``, ``metric``, ``seeds``, ``reached``,
        ``mean_records``, ``std_records``, ``final_records``,
        ``final_model_error_mean``, ``final_model_error_std``,
        ``final_metric_mean``, ``final_metric_std``, ``final_precision_mean``
        and ``final_recall_mean``.
    """
    tolerance = _check_tolerance(tolerance)
    frame = _validated(frame, SUMMARY_COLUMNS)

    reach = _reach_table(frame, tolerance)
    reach["counted"] = reach["records"].fillna(reach["max_records"].astype(float))
    reach["halving_counted"] = reach["halving_records"].fillna(reach["max_records"].astype(float))
    final = _final_points(frame)
    runs = reach.merge(final, on=RUN_KEYS, how="left", validate="one_to_one")
    metrics = frame.groupby("scenario", sort=False)["metric"].first()

    rows = []
    for (scenario, method), group in runs.groupby(["scenario", "method"], sort=False):
        rows.append(
            {
                "scenario": scenario,
                "method": method,
                "metric": metrics[scenario],
                "seeds": len(group),
                "reached": int(group["records"].notna().sum()),
                "mean_records": group["counted"].mean(),
                "std_records": group["counted"].std(ddof=1),
                "halved": int(group["halving_records"].notna().sum()),
                "mean_halving_records": group["halving_counted"].mean(),
                "std_halving_records": group["halving_counted"].std(ddof=1),
                "final_records": group["final_records"].iloc[0],
                "final_model_error_mean": group["model_error"].mean(),
                "final_model_error_std": group["model_error"].std(ddof=1),
                "final_metric_mean": group["test_metric"].mean(),
                "final_metric_std": group["test_metric"].std(ddof=1),
                "final_precision_mean": group["precision"].mean(),
                "final_recall_mean": group["recall"].mean(),
            }
        )
    return _in_display_order(pd.DataFrame(rows), frame)


# ---------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------


def plot_filename(scenario: str) -> str:
    """Return the PNG file name of a scenario's plot.

    The name is the lowercased scenario with each run of non-alphanumeric
    characters replaced by one ``_``, for example
    ``"breast_cancer, systematic 5%"`` becomes ``"breast_cancer_systematic_5.png"``.

    Raises
    ------
    ValueError
        If the scenario contains no letter or digit.
    """
    stem = re.sub(r"[^a-z0-9]+", "_", str(scenario).lower()).strip("_")
    if not stem:
        raise ValueError(
            f"scenario {scenario!r} contains no letter or digit to name its plot file; rename the scenario"
        )
    return f"{stem}.png"


def _plot_filenames(scenarios: list) -> dict:
    names = {}
    owners = {}
    for scenario in scenarios:
        name = plot_filename(scenario)
        if name in owners:
            raise ValueError(
                f"scenarios {owners[name]!r} and {scenario!r} both map to the plot file {name!r}; "
                "rename one so they differ in letters or digits"
            )
        owners[name] = scenario
        names[scenario] = name
    return names


def _pyplot():
    try:
        import matplotlib
    except ImportError as error:
        raise ImportError(f"plotting the comparison needs matplotlib; install it with {INSTALL_HINT}") from error
    # NOTE: this selects the file-only Agg backend for the whole process,
    # including any interactive session that calls this function.
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _align_seeds(runs: pd.DataFrame, columns: list[str]) -> tuple[np.ndarray, dict]:
    """Put the seeds of one method on a common ``records_cleaned`` grid.

    Returns the grid and, per column, an array of shape ``(seeds, points)``.
    When every seed has the same grid it is used as is.  Otherwise the grid is
    the union of all seeds' points, each seed is interpolated linearly onto it,
    and points outside a seed's own range are NaN.
    """
    curves = [run.sort_values("records_cleaned") for _, run in runs.groupby("seed", sort=False)]
    grids = [curve["records_cleaned"].to_numpy(dtype=float) for curve in curves]

    if all(np.array_equal(grid, grids[0]) for grid in grids):
        grid = grids[0]
        values = {column: np.vstack([curve[column].to_numpy(dtype=float) for curve in curves]) for column in columns}
        return grid, values

    grid = np.unique(np.concatenate(grids))
    values = {}
    for column in columns:
        rows = [_interpolate(x, curve[column].to_numpy(dtype=float), grid) for x, curve in zip(grids, curves)]
        values[column] = np.vstack(rows)
    return grid, values


def _draw_band(axes, grid: np.ndarray, values: np.ndarray, label: str, color) -> None:
    """Draw the mean over seeds as a line and the min..max over seeds as a band.

    A grid point where any seed has no value is left out, so the line only
    shows means over all seeds.
    """
    complete = np.isfinite(values).all(axis=0)
    if not complete.any():
        return
    x = grid[complete]
    values = values[:, complete]
    axes.plot(x, values.mean(axis=0), label=label, color=color, linewidth=1.6)
    axes.fill_between(x, values.min(axis=0), values.max(axis=0), color=color, alpha=0.2, linewidth=0)


def _plot_scenario(plt, data: pd.DataFrame, scenario: str, colors: dict, path: str) -> None:
    metric = str(data["metric"].iloc[0])
    has_model_error = bool(data["model_error"].notna().any())
    figure, (metric_axes, error_axes) = plt.subplots(1, 2, figsize=(11, 4.2))
    try:
        for method in _first_appearance(data["method"]):
            grid, values = _align_seeds(data[data["method"] == method], ["test_metric", "model_error"])
            _draw_band(metric_axes, grid, values["test_metric"], str(method), colors[method])
            if has_model_error:
                _draw_band(error_axes, grid, values["model_error"], str(method), colors[method])

        clean = data.groupby("seed", sort=False)["clean_metric"].first().mean()
        if math.isfinite(clean):
            metric_axes.axhline(clean, color="black", linestyle="--", linewidth=1, label=f"clean model ({clean:.3f})")

        metric_axes.set_xlabel("records cleaned")
        metric_axes.set_ylabel(f"test {metric}")
        metric_axes.set_title(f"test {metric}")
        metric_axes.grid(alpha=0.3)
        metric_axes.legend(fontsize="small")

        error_axes.set_xlabel("records cleaned")
        error_axes.set_ylabel("model error ‖θ − θ_clean‖ / ‖θ_clean‖")
        error_axes.set_title("model error")
        error_axes.grid(alpha=0.3)
        if has_model_error:
            error_axes.legend(fontsize="small")
        else:
            error_axes.set_xticks([])
            error_axes.set_yticks([])
            error_axes.text(
                0.5, 0.5, "model error not recorded", ha="center", va="center", transform=error_axes.transAxes
            )

        figure.suptitle(str(scenario))
        figure.tight_layout()
        figure.savefig(path, dpi=120)
    finally:
        plt.close(figure)


def plot_curves(frame: pd.DataFrame, directory: str | os.PathLike) -> list[str]:
    """Write one PNG of cleaning curves per scenario.

    Each figure has two panels against records cleaned: the test metric, with a
    dashed line at the clean model's metric (mean over seeds), and the model
    error.  Each method is drawn as its mean over seeds with a min..max band.
    Seeds with different ``records_cleaned`` grids are interpolated onto the
    union of their grids, and a point is drawn only where every seed has a
    value.  A scenario whose ``model_error`` is all NaN gets an empty model
    error panel.

    Parameters
    ----------
    frame : pandas.DataFrame
        Comparison results, one row per scenario, method, seed and curve point.
    directory : str or os.PathLike
        Output directory, created if missing.  Existing files of the same
        name are replaced.

    Returns
    -------
    list of str
        Paths of the written files, in order of first appearance of the
        scenarios.  File names come from :func:`plot_filename`.

    Raises
    ------
    ImportError
        If matplotlib is not installed.
    ValueError
        If the table is invalid (see :func:`records_to_reach`) or two
        scenarios map to the same file name.
    """
    plt = _pyplot()
    frame = _validated(frame, PLOT_COLUMNS)
    scenarios = _first_appearance(frame["scenario"])
    names = _plot_filenames(scenarios)

    # One color per method across all figures, so a method looks the same in every plot.
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    colors = {method: palette[rank % len(palette)] for rank, method in enumerate(_first_appearance(frame["method"]))}

    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    paths = []
    for scenario in scenarios:
        path = os.path.join(directory, names[scenario])
        _plot_scenario(plt, frame[frame["scenario"] == scenario], scenario, colors, path)
        paths.append(path)
    return paths


# ---------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------


def _format_count(value) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.1f}"


def _format_decimal(value) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:.3f}"


def _format_spread(mean, std, formatter) -> str:
    """Format ``mean ± std``, or the mean alone when the std is NaN (a single seed)."""
    if not math.isfinite(mean):
        return "n/a"
    if not math.isfinite(std):
        return formatter(mean)
    return f"{formatter(mean)} ± {formatter(std)}"


def _format_tolerance(tolerance: float) -> str:
    return f"{tolerance * 100:g}%"


def _table_cell(text: str) -> str:
    return str(text).replace("|", "\\|")


def _records_cell(row) -> str:
    spread = _format_spread(row["mean_records"], row["std_records"], _format_count)
    prefix = "" if row["reached"] == row["seeds"] else ">= "
    return f"{prefix}{spread} ({row['reached']}/{row['seeds']} seeds reached)"


def _halving_cell(row) -> str:
    spread = _format_spread(row["mean_halving_records"], row["std_halving_records"], _format_count)
    prefix = "" if row["halved"] == row["seeds"] else ">= "
    return f"{prefix}{spread} ({row['halved']}/{row['seeds']})"


def _precision_recall_cell(row) -> str:
    precision, recall = row["final_precision_mean"], row["final_recall_mean"]
    if not math.isfinite(precision) and not math.isfinite(recall):
        return "-"
    return f"{_format_decimal(precision)} / {_format_decimal(recall)}"


def _image_link(scenario: str, image_directory) -> str:
    directory = pathlib.PurePath(os.fspath(image_directory)).as_posix()
    target = urllib.parse.quote(f"{directory}/{plot_filename(scenario)}")
    alt = str(scenario).replace("[", "(").replace("]", ")")
    return f"![{alt}]({target})"


def _scenario_section(
    data: pd.DataFrame, summary: pd.DataFrame, scenario: str, image_directory, tolerance: float
) -> list[str]:
    metric = str(data["metric"].iloc[0])
    per_seed = data.groupby("seed", sort=False)[["dirty_metric", "clean_metric"]].first()
    dirty = _format_spread(per_seed["dirty_metric"].mean(), per_seed["dirty_metric"].std(ddof=1), _format_decimal)
    clean = _format_spread(per_seed["clean_metric"].mean(), per_seed["clean_metric"].std(ddof=1), _format_decimal)

    lines = [f"## {scenario}", ""]
    lines.append(f"Test {metric}: dirty model {dirty}, clean model {clean} (over {len(per_seed)} seeds).")
    lines.append("")
    if image_directory is not None:
        lines += [_image_link(scenario, image_directory), ""]

    final = _format_count(summary["final_records"].iloc[0])
    with_detector = bool(summary[["final_precision_mean", "final_recall_mean"]].notna().to_numpy().any())
    header = [
        "method",
        f"records cleaned to reach the clean {metric} within {_format_tolerance(tolerance)}",
        "records cleaned to halve the dirty model's error",
        f"model error at {final} records",
        f"test {metric} at {final} records",
    ]
    if with_detector:
        header.append(f"precision / recall at {final} records")
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))

    for _, row in summary.iterrows():
        cells = [
            _table_cell(row["method"]),
            _records_cell(row),
            _halving_cell(row),
            _format_spread(row["final_model_error_mean"], row["final_model_error_std"], _format_decimal),
            _format_spread(row["final_metric_mean"], row["final_metric_std"], _format_decimal),
        ]
        if with_detector:
            cells.append(_precision_recall_cell(row))
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    return lines


def results_markdown(
    frame: pd.DataFrame, image_directory: str | os.PathLike | None = None, tolerance: float = 0.01
) -> str:
    """Render the comparison as Markdown, with one section and table per scenario.

    Each section states the scenario's dirty and clean test metric as mean ±
    std over seeds, then has one table row per method.  A row gives the
    records cleaned to reach the clean metric from :func:`summarize`, with a
    ``>=`` prefix when some seeds never reached it.  It also gives the model
    error, the test metric and, when recorded, the detector's precision and
    recall at the scenario's final common point.

    Parameters
    ----------
    frame : pandas.DataFrame
        Comparison results, one row per scenario, method, seed and curve point.
    image_directory : str or os.PathLike, optional
        Directory of the PNG files of :func:`plot_curves` as seen from the
        Markdown file, for example ``"plots"``.  It is written into the image
        links as given, so pass a path relative to the Markdown file.  Without
        it the document has no images.
    tolerance : float, default=0.01
        Relative tolerance of :func:`records_to_reach`.

    Returns
    -------
    str
        The Markdown document.
    """
    tolerance = _check_tolerance(tolerance)
    frame = _validated(frame, MARKDOWN_COLUMNS)
    summary = summarize(frame, tolerance)
    scenarios = _first_appearance(frame["scenario"])
    if image_directory is not None:
        _plot_filenames(scenarios)

    lines = [
        "# Method comparison",
        "",
        "A seed that never reaches the clean model's test metric counts as its largest records cleaned, "
        "so a value marked `>=` is a lower bound.  The same holds for halving the model error "
        "||theta - theta_c|| / ||theta_c|| of the model trained on the dirty table.  Means are over seeds "
        "and ± is the standard deviation.",
        "",
    ]
    for scenario in scenarios:
        data = frame[frame["scenario"] == scenario]
        rows = summary[summary["scenario"] == scenario]
        lines += _scenario_section(data, rows, scenario, image_directory, tolerance)
    return "\n".join(lines)
