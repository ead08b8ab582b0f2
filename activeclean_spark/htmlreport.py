"""A self-contained HTML report of a cleaning session.

:func:`write_report` turns the engine's per-iteration history and audit trail
into one HTML file.  The file shows a summary table, the model change and
held-out metric by iteration and the records cleaned by error class.  It ends
with an optional view of the suggested batch
(:class:`~activeclean_spark.diagnose.Diagnosis`) and a summary of the audit
trail.  The images are embedded as base64 data URIs, so
the file needs nothing beside it, and are also written as PNG files next to
it.  The page has inline CSS only, no JavaScript and no external resource.

Every value that comes from the data (title, keys, column names, values,
class names, summary entries) is escaped with :func:`html.escape`, so markup
in a record shows as text.

This module needs numpy, pandas and matplotlib.  It does not import pyspark.
"""

from __future__ import annotations

import base64
import datetime
import html
import logging
import math
import numbers
import os
from collections.abc import Mapping

import numpy as np
import pandas as pd

from .diagnose import Diagnosis, new_figure, plain_text, png_bytes, write_atomically

__all__ = ["html_table", "write_report"]

logger = logging.getLogger(__name__)

# Longer values are cut in table cells, so one long text field cannot stretch the page.
MAX_CELL_CHARS = 200
# Maximum number of bars in the error class chart.  The table lists every class.
MAX_CHART_CLASSES = 20
# Changed columns listed per error class.
TOP_CHANGED_COLUMNS = 3

# Metrics that the engine records, in the order of preference when no metric name is given.
PREFERRED_METRICS = ("accuracy", "rmse", "f1", "mae")
UNCLASSIFIED = "unclassified"

STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 72em; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; }
h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ccc; padding-bottom: 0.2em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
caption { text-align: left; font-weight: bold; padding-bottom: 0.3em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1em 0; }
figure img { max-width: 100%; height: auto; }
figcaption, p.note { color: #666; font-size: 0.85em; }
"""


# ---------------------------------------------------------------------------
# Escaped HTML pieces
# ---------------------------------------------------------------------------


class _Lines(tuple):
    """Cell content shown as one line per item."""


def format_value(value) -> str:
    """Format a value for a table cell as plain text.

    None is empty, NaN, infinities and pandas' missing values are ``"n/a"``,
    floats have 5 significant digits, and dicts and lists are listed item by
    item.  Text longer than 200 characters is cut.  The result is not
    escaped.
    """
    if value is None:
        return ""
    if value is pd.NA or value is pd.NaT:
        return "n/a"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        value = float(value)
        if not math.isfinite(value):
            return "n/a"
        return f"{value:.5g}"
    if isinstance(value, Mapping):
        text = ", ".join(f"{key}: {format_value(item)}" for key, item in value.items())
    elif isinstance(value, (list, tuple)):
        text = ", ".join(format_value(item) for item in value)
    else:
        text = str(value)
    if len(text) > MAX_CELL_CHARS:
        text = text[: MAX_CELL_CHARS - 1] + "…"
    return text


def _cell(value, tag: str = "td") -> str:
    if isinstance(value, _Lines):
        content = "<br>".join(html.escape(format_value(item)) for item in value)
    else:
        content = html.escape(format_value(value))
    numeric = isinstance(value, numbers.Number) and not isinstance(value, (bool, np.bool_))
    attribute = ' class="number"' if numeric and tag == "td" else ""
    return f"<{tag}{attribute}>{content}</{tag}>"


def html_table(frame: pd.DataFrame, caption: str | None = None) -> str:
    """Render a DataFrame as an HTML table with every header and cell escaped.

    The index is not shown.  Cells are formatted by :func:`format_value`.
    """
    lines = ["<table>"]
    if caption:
        lines.append(f"<caption>{html.escape(caption)}</caption>")
    lines.append("<thead><tr>" + "".join(_cell(column, "th") for column in frame.columns) + "</tr></thead>")
    lines.append("<tbody>")
    for row in frame.itertuples(index=False, name=None):
        lines.append("<tr>" + "".join(_cell(value) for value in row) + "</tr>")
    lines.append("</tbody></table>")
    return "\n".join(lines)


def image_html(encoded: str, alt: str, caption: str | None = None) -> str:
    """Return a figure element that shows a base64-encoded PNG inline."""
    parts = [f'<figure><img src="data:image/png;base64,{encoded}" alt="{html.escape(alt)}">']
    if caption:
        parts.append(f"<figcaption>{html.escape(caption)}</figcaption>")
    parts.append("</figure>")
    return "".join(parts)


def _paragraph(text: str, css_class: str = "") -> str:
    attribute = f' class="{css_class}"' if css_class else ""
    return f"<p{attribute}>{html.escape(text)}</p>"


# ---------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------


def _check_records(records, name: str, required: tuple[str, ...]) -> list[dict]:
    if not isinstance(records, (list, tuple)):
        raise TypeError(f"{name} must be a list of dicts, got {type(records).__name__}")
    for index, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise TypeError(f"{name}[{index}] must be a dict, got {type(record).__name__}")
        missing = [field for field in required if field not in record]
        if missing:
            raise ValueError(
                f"{name}[{index}] is missing {', '.join(map(repr, missing))}; "
                f"each entry needs {', '.join(required)} as the engine records them"
            )
    return list(records)


def _history_frame(history: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "iteration": [record["iteration"] for record in history],
            "cleaned": [record["cleaned"] for record in history],
            "step_norm": pd.to_numeric([record["step_norm"] for record in history], errors="coerce"),
            "model_error": pd.to_numeric([record.get("model_error") for record in history], errors="coerce"),
        }
    )
    frame["step_norm"] = frame["step_norm"].astype(float)
    frame["model_error"] = frame["model_error"].astype(float)
    return frame


def _metric_names(history: list[dict]) -> list[str]:
    names = []
    for record in history:
        for name in (record.get("test") or {}):
            if name != "n" and name not in names:
                names.append(name)
    return names


def _choose_metric(history: list[dict], metric_name: str | None) -> str | None:
    available = _metric_names(history)
    if metric_name is not None:
        if metric_name not in available:
            found = ", ".join(available) or "none"
            raise ValueError(
                f"metric_name {metric_name!r} is not in the history's test metrics (found: {found}); "
                "pass one of them or None"
            )
        return metric_name
    for name in PREFERRED_METRICS:
        if name in available:
            return name
    return available[0] if available else None


def _metric_values(history: list[dict], metric: str | None) -> np.ndarray:
    if metric is None:
        return np.full(len(history), np.nan)
    values = [(record.get("test") or {}).get(metric) for record in history]
    return pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").to_numpy(dtype=float)


def _audit_frame(audit: list[dict]) -> pd.DataFrame:
    def classes():
        for record in audit:
            value = record.get("error_class")
            yield UNCLASSIFIED if value is None or value == "" else str(value)

    return pd.DataFrame(
        {
            "key": [record["key"] for record in audit],
            "iteration": [record["iteration"] for record in audit],
            "status": [str(record["status"]) for record in audit],
            "sample": [str(record.get("sample") or "unknown") for record in audit],
            "error_class": list(classes()),
            "changed_columns": [list(record.get("changed_columns") or []) for record in audit],
        }
    )


# ---------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------


def _progress_figure(frame: pd.DataFrame, metric: str | None, metric_values: np.ndarray):
    figure = new_figure((11.0, 4.0))
    # Imported after new_figure, whose ImportError names the install command.
    from matplotlib.ticker import MaxNLocator

    step_axes, metric_axes = figure.subplots(1, 2)
    iterations = frame["iteration"].to_numpy(dtype=float)

    step_norm = frame["step_norm"].to_numpy()
    drawable = np.isfinite(step_norm) & (step_norm > 0)
    if drawable.any():
        step_axes.plot(iterations[drawable], step_norm[drawable], marker="o", markersize=3, color="C0")
        step_axes.set_yscale("log")
    else:
        step_axes.text(0.5, 0.5, "no nonzero model change", ha="center", va="center", transform=step_axes.transAxes)
    skipped = int((~drawable).sum())
    title = "model change per iteration"
    if skipped:
        title += f" ({skipped} zero or n/a not drawn)"
    step_axes.set_title(title)
    step_axes.set_xlabel("iteration")
    step_axes.set_ylabel("step norm (log scale)")
    step_axes.grid(alpha=0.3, which="both")
    step_axes.xaxis.set_major_locator(MaxNLocator(integer=True))

    handles = []
    has_metric = bool(np.isfinite(metric_values).any())
    model_error = frame["model_error"].to_numpy()
    has_error = bool(np.isfinite(model_error).any())
    if has_metric:
        handles += metric_axes.plot(
            iterations, metric_values, marker="o", markersize=3, color="C2", label=f"test {plain_text(metric)}"
        )
        metric_axes.set_ylabel(f"test {plain_text(metric)}")
    if has_error:
        # The model error is relative, so it gets its own axis beside a metric such as RMSE.
        error_axes = metric_axes.twinx() if has_metric else metric_axes
        handles += error_axes.plot(
            iterations, model_error, marker="s", markersize=3, color="C1", label="model error"
        )
        error_axes.set_ylabel("model error ‖θ − θ_clean‖ / ‖θ_clean‖")
    if handles:
        metric_axes.legend(handles=handles, fontsize="small")
    else:
        metric_axes.text(
            0.5, 0.5, "no held-out metric recorded", ha="center", va="center", transform=metric_axes.transAxes
        )
    metric_axes.set_title("held-out metric per iteration")
    metric_axes.set_xlabel("iteration")
    metric_axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    metric_axes.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def _classes_figure(counts: pd.Series):
    shown = counts.iloc[:MAX_CHART_CLASSES]
    height = 1.2 + 0.32 * len(shown)
    figure = new_figure((8.0, height))
    from matplotlib.ticker import MaxNLocator

    axes = figure.add_subplot()
    positions = np.arange(len(shown))
    axes.barh(positions, shown.to_numpy(), color="C0")
    axes.set_yticks(positions, [plain_text(name) for name in shown.index])
    axes.invert_yaxis()
    axes.set_xlabel("records cleaned")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    title = "records cleaned by error class"
    if len(counts) > len(shown):
        title += f" (largest {len(shown)} of {len(counts)})"
    axes.set_title(title)
    axes.grid(alpha=0.3, axis="x")
    figure.tight_layout()
    return figure


# ---------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------


class _Images:
    """The PNG images of one report: written beside the HTML file and embedded in it."""

    def __init__(self, html_path: str):
        self.directory = os.path.dirname(os.path.abspath(html_path))
        self.stem = os.path.splitext(os.path.basename(html_path))[0]
        self.paths: list[str] = []

    def add(self, figure, name: str, alt: str) -> str:
        data = png_bytes(figure)
        path = os.path.join(self.directory, f"{self.stem}-{name}.png")
        write_atomically(path, data)
        self.paths.append(path)
        encoded = base64.b64encode(data).decode("ascii")
        return image_html(encoded, alt, caption=f"Also saved as {os.path.basename(path)}")


def _summary_section(summary: Mapping | None, history: list[dict], audit: list[dict]) -> str:
    if summary:
        rows = [(key, value) for key, value in summary.items()]
    else:
        rows = [
            ("iterations run", len(history)),
            ("records cleaned", history[-1]["cleaned"] if history else len(audit)),
            ("records in the audit trail", len(audit)),
        ]
    table = html_table(pd.DataFrame(rows, columns=["item", "value"]))
    return f"<h2>Summary</h2>\n{table}"


def _progress_section(history: list[dict], metric_name: str | None, images: _Images) -> str:
    parts = ["<h2>Model change and held-out metric by iteration</h2>"]
    if not history:
        parts.append(_paragraph("No iteration has run yet, so there is no model change or held-out metric to show."))
        return "\n".join(parts)

    metric = _choose_metric(history, metric_name)
    frame = _history_frame(history).sort_values("iteration", kind="stable")
    values = _metric_values(history, metric)[frame.index.to_numpy()]
    parts.append(
        _paragraph(
            "The step norm is the size of each iteration's model update, so it falls as the model settles. "
            "The model error is the distance to the model trained on the fully clean data, relative to "
            "that model's norm."
        )
    )
    parts.append(images.add(_progress_figure(frame, metric, values), "progress", "model change and held-out metric"))

    table = pd.DataFrame(
        {
            "iteration": frame["iteration"].to_numpy(),
            "records cleaned": frame["cleaned"].to_numpy(),
            "step norm": frame["step_norm"].to_numpy(),
        }
    )
    if metric is not None:
        table[f"test {metric}"] = values
    if frame["model_error"].notna().any():
        table["model error"] = frame["model_error"].to_numpy()
    parts.append(html_table(table, caption="Per iteration"))
    return "\n".join(parts)


def _top_changed_columns(audit_frame: pd.DataFrame) -> pd.Series:
    """Return, per error class, its most often changed columns as ``"column (count)"`` text."""
    exploded = audit_frame[["error_class", "changed_columns"]].explode("changed_columns").dropna()
    if exploded.empty:
        return pd.Series(dtype=object)
    counts = exploded.groupby(["error_class", "changed_columns"]).size().rename("count").reset_index()
    counts = counts.sort_values(["error_class", "count", "changed_columns"], ascending=[True, False, True])
    top = counts.groupby("error_class").head(TOP_CHANGED_COLUMNS)
    text = top["changed_columns"].astype(str) + " (" + top["count"].astype(str) + ")"
    return text.groupby(top["error_class"]).agg(list).map(_Lines)


def _classes_section(audit_frame: pd.DataFrame, images: _Images) -> str:
    parts = ["<h2>Records cleaned by error class</h2>"]
    if audit_frame.empty:
        parts.append(_paragraph("No record has been cleaned yet."))
        return "\n".join(parts)

    counts = audit_frame["error_class"].value_counts(sort=False)
    # Largest first, ties by name, so the order does not depend on the order of the audit trail.
    counts = counts.iloc[np.lexsort((counts.index.to_numpy(dtype=str), -counts.to_numpy()))]
    parts.append(images.add(_classes_figure(counts), "classes", "records cleaned by error class"))

    top = _top_changed_columns(audit_frame)
    table = pd.DataFrame(
        {
            "error class": counts.index.to_numpy(),
            "records": counts.to_numpy(),
            "share": [f"{share:.1%}" for share in counts.to_numpy() / counts.sum()],
            "most often changed columns": [top.get(name, "") for name in counts.index],
        }
    )
    parts.append(html_table(table))
    return "\n".join(parts)


def _diagnosis_section(diagnosis: Diagnosis, images: _Images) -> str:
    parts = ["<h2>Suggested batch among background records</h2>"]
    parts.append(
        _paragraph(
            "Background records are small dots and the suggested batch larger markers with a black edge, "
            "coloured by label. An x marks a record that the detector suspects of being dirty."
        )
    )
    parts.append(images.add(diagnosis.figure(), "diagnose", "suggested batch among background records"))
    parts.append(html_table(diagnosis.table(), caption="Records of the suggested batch"))
    return "\n".join(parts)


def _changes(record: Mapping) -> _Lines:
    """Return the record's changed values as ``column: before -> after`` lines."""
    if record.get("status") == "removed":
        return _Lines(["removed"])
    dirty = record.get("dirty") or {}
    cleaned = record.get("cleaned") or {}
    lines = []
    for column in record.get("changed_columns") or []:
        before = format_value(dirty.get(column))
        after = format_value(cleaned.get(column))
        lines.append(f"{column}: {before} -> {after}")
    return _Lines(lines)


def _count_table(values: pd.Series, name: str) -> str:
    counts = values.value_counts().sort_index()
    frame = pd.DataFrame({name: counts.index.to_numpy(), "records": counts.to_numpy()})
    return html_table(frame, caption=f"By {name}")


def _audit_section(audit: list[dict], audit_frame: pd.DataFrame, recent: int) -> str:
    parts = ["<h2>Audit trail</h2>"]
    if audit_frame.empty:
        parts.append(_paragraph("No record has been cleaned yet."))
        return "\n".join(parts)

    parts.append(_count_table(audit_frame["status"], "status"))
    parts.append(_count_table(audit_frame["sample"], "sample"))

    by_iteration = pd.crosstab(audit_frame["iteration"], audit_frame["status"])
    by_iteration["total"] = by_iteration.sum(axis=1)
    by_iteration = by_iteration.reset_index()
    by_iteration.columns.name = None
    parts.append(html_table(by_iteration, caption="By iteration and status"))

    latest = list(reversed(audit[-recent:]))
    table = pd.DataFrame(
        {
            "key": [record["key"] for record in latest],
            "iteration": [record["iteration"] for record in latest],
            "status": [record["status"] for record in latest],
            "sample": [record.get("sample") for record in latest],
            "error class": [record.get("error_class") for record in latest],
            "changed values": [_changes(record) for record in latest],
        }
    )
    if any(record.get("operation") for record in latest):
        table["operation"] = [record.get("operation") for record in latest]
    caption = f"Most recent {len(latest)} of {len(audit)} cleaned records, newest first"
    parts.append(html_table(table, caption=caption))
    return "\n".join(parts)


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------


def write_report(
    path: str | os.PathLike,
    *,
    history: list[dict],
    audit: list[dict],
    title: str = "ActiveClean session",
    summary: dict | None = None,
    diagnosis: Diagnosis | None = None,
    metric_name: str | None = None,
    recent: int = 50,
) -> list[str]:
    """Write the HTML report of a cleaning session and its PNG images.

    Parameters
    ----------
    path : str or os.PathLike
        The HTML file.  Its directory is created if missing.  The images are
        written beside it as ``<stem>-progress.png`` (when an iteration has
        run), ``<stem>-classes.png`` (when a record has been cleaned) and
        ``<stem>-diagnose.png`` (with a diagnosis).  Every file is replaced
        atomically.
    history : list of dict
        One entry per iteration with ``iteration``, ``cleaned`` (records
        cleaned so far) and ``step_norm`` (norm of the model update), and
        optionally ``test`` (a dict of held-out metrics such as
        ``{"accuracy": 0.8, "n": 100}``) and ``model_error``.  May be empty.
    audit : list of dict
        One entry per cleaned record with ``key``, ``iteration`` and
        ``status`` (``"changed"``, ``"unchanged"`` or ``"removed"``), and
        optionally ``changed_columns``, ``error_class``, ``sample``,
        ``dirty`` and ``cleaned`` (dicts of column values) and ``operation``.
    title : str, default="ActiveClean session"
        Page title.
    summary : dict, optional
        Items shown in the table at the top, in their order.  Without it the
        table shows the iterations run and the records cleaned.
    diagnosis : Diagnosis, optional
        View of the suggested batch, shown with its table of batch records.
    metric_name : str, optional
        Held-out metric to plot.  Default: accuracy, rmse, f1 or mae, the
        first of them that the history contains, or else its first metric.
    recent : int, default=50
        Number of latest audit records listed with their changed values.

    Returns
    -------
    list of str
        The files written: the HTML file first, then the PNG files.

    Raises
    ------
    TypeError
        If an argument has the wrong type.
    ValueError
        If a history or audit entry lacks a required field, ``metric_name``
        is not in the history or ``recent`` is not positive.
    ImportError
        If matplotlib is not installed.
    """
    history = _check_records(history, "history", ("iteration", "cleaned", "step_norm"))
    audit = _check_records(audit, "audit", ("key", "iteration", "status"))
    if summary is not None and not isinstance(summary, Mapping):
        raise TypeError(f"summary must be a dict or None, got {type(summary).__name__}")
    if diagnosis is not None and not isinstance(diagnosis, Diagnosis):
        raise TypeError(f"diagnosis must be a Diagnosis from activeclean_spark.diagnose, got {type(diagnosis).__name__}")
    if isinstance(recent, bool) or not isinstance(recent, numbers.Integral) or recent < 1:
        raise ValueError(f"recent must be a positive integer number of audit records, got {recent!r}")

    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    images = _Images(path)
    audit_frame = _audit_frame(audit)
    written = datetime.datetime.now().astimezone().isoformat(timespec="seconds")

    sections = [
        _summary_section(summary, history, audit),
        _progress_section(history, metric_name, images),
        _classes_section(audit_frame, images),
    ]
    if diagnosis is not None:
        sections.append(_diagnosis_section(diagnosis, images))
    sections.append(_audit_section(audit, audit_frame, int(recent)))

    escaped_title = html.escape(str(title))
    document = "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            f"<title>{escaped_title}</title>",
            f"<style>{STYLE}</style>",
            "</head>",
            "<body>",
            f"<h1>{escaped_title}</h1>",
            _paragraph(f"Written {written}.", "note"),
            *sections,
            "</body>",
            "</html>",
            "",
        ]
    )
    write_atomically(path, document.encode("utf-8"))
    logger.info("Wrote the session report %s with %d image(s)", path, len(images.paths))
    return [path, *images.paths]
