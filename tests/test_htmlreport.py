"""Tests of the HTML session report on a hand-built history and audit trail."""

from __future__ import annotations

import base64
import math
import os
import re
import sys

import numpy as np
import pandas as pd
import pytest

from activeclean_spark.diagnose import diagnose
from activeclean_spark.htmlreport import format_value, html_table, write_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SCRIPT = "<script>alert(1)</script>"
BOLD = "<b>x</b>"
SECTIONS = [
    "Summary",
    "Model change and held-out metric by iteration",
    "Records cleaned by error class",
    "Audit trail",
]
DATA_URI = re.compile(r"data:image/png;base64,[A-Za-z0-9+/=]+")

# Records cleaned per error class in the fake audit trail: 60 in all.
CLASS_COUNTS = {"price": 30, "name+price": 18, "removed": 12}


def _history(iterations=5):
    history = []
    for t in range(1, iterations + 1):
        history.append(
            {
                "iteration": t,
                "cleaned": 12 * t,
                "step_norm": 0.5 / t,
                "test": {"n": 200, "accuracy": 0.70 + 0.03 * t, "f1": 0.6 + 0.02 * t},
                "model_error": 0.4 / t,
            }
        )
    return history


def _audit():
    """Return 60 audit records over 5 iterations with the classes of CLASS_COUNTS."""
    classes = [name for name, count in CLASS_COUNTS.items() for _ in range(count)]
    order = np.random.default_rng(0).permutation(len(classes))
    audit = []
    for index, position in enumerate(order):
        error_class = classes[position]
        dirty = {"id": index, "name": f"item {index}", "price": -1.0 * index}
        if error_class == "removed":
            status, changed, cleaned = "removed", [], None
        elif error_class == "price":
            status, changed = "changed", ["price"]
            cleaned = {**dirty, "price": float(index)}
        else:
            status, changed = "changed", ["name", "price"]
            cleaned = {**dirty, "name": f"Item {index}", "price": float(index)}
        audit.append(
            {
                "key": index,
                "iteration": 1 + index // 12,
                "status": status,
                "changed_columns": changed,
                "error_class": error_class,
                "sample": "audit" if index % 10 == 0 else "batch",
                "dirty": dirty,
                "cleaned": cleaned,
                "operation": None,
            }
        )
    # The newest record has markup in a dirty value and in its key.
    audit[-1]["dirty"]["name"] = SCRIPT
    audit[-1]["key"] = BOLD
    return audit


def _read(path):
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def _diagnosis():
    rng = np.random.default_rng(2)
    return diagnose(
        rng.normal(size=(40, 3)),
        rng.integers(0, 2, 40),
        rng.normal(size=(5, 3)) + 2,
        [0, 1, 1, 0, 1],
        suspect_batch=[True, False, False, True, False],
        details_batch=pd.DataFrame({"id": range(5), "name": [SCRIPT, BOLD, "a", "b", "c"]}),
        method="pca",
    )


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    # One report shared by the tests that only read it, because drawing its images takes a second or more.
    folder = tmp_path_factory.mktemp("report")
    files = write_report(
        folder / "session.html",
        history=_history(),
        audit=_audit(),
        title="Session <i>one</i>",
        summary={"records in table": 1000, "budget": 100, "seed": 7, "note": BOLD, "clean accuracy": math.nan},
    )
    return folder, files


# ---------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------


def test_report_files(report):
    folder, files = report
    assert files == [
        str(folder / "session.html"),
        str(folder / "session-progress.png"),
        str(folder / "session-classes.png"),
    ]


def test_report_no_temporary_files(report):
    folder, files = report
    assert sorted(os.listdir(folder)) == sorted(os.path.basename(path) for path in files)


def test_report_pngs_valid(report):
    import matplotlib.image

    _, files = report
    for path in files[1:]:
        with open(path, "rb") as handle:
            assert handle.read(8) == PNG_SIGNATURE
        assert matplotlib.image.imread(path).ndim == 3


def test_report_embeds_same_images(report):
    _, files = report
    embedded = [base64.b64decode(uri.split(",", 1)[1]) for uri in DATA_URI.findall(_read(files[0]))]
    written = []
    for path in files[1:]:
        with open(path, "rb") as handle:
            written.append(handle.read())
    assert embedded == written


def test_report_with_diagnosis(tmp_path):
    files = write_report(tmp_path / "r.html", history=_history(), audit=_audit(), diagnosis=_diagnosis())
    assert [os.path.basename(path) for path in files] == ["r.html", "r-progress.png", "r-classes.png", "r-diagnose.png"]
    text = _read(files[0])
    assert "Suggested batch among background records" in text
    assert text.count("data:image/png;base64,") == 3
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<script" not in text.lower()


def test_report_creates_directory(tmp_path):
    files = write_report(tmp_path / "new" / "r.html", history=[], audit=[])
    assert os.path.isfile(files[0])


def test_report_replaces_file(tmp_path):
    path = tmp_path / "r.html"
    write_report(path, history=[], audit=[], title="first")
    write_report(path, history=[], audit=[], title="second")
    assert "<title>second</title>" in _read(path)


# ---------------------------------------------------------------------------
# Content
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("title", SECTIONS)
def test_report_section_titles(report, title):
    _, files = report
    assert f"<h2>{title}</h2>" in _read(files[0])


@pytest.mark.parametrize("error_class, count", CLASS_COUNTS.items())
def test_report_class_counts(report, error_class, count):
    _, files = report
    share = f"{count / 60:.1%}"
    row = f'<tr><td>{error_class}</td><td class="number">{count}</td><td>{share}</td>'
    assert row in _read(files[0])


def test_report_changed_columns_per_class(report):
    _, files = report
    text = _read(files[0])
    assert "<td>name+price</td>" in text
    assert "name (18)<br>price (18)" in text


def test_report_status_counts(report):
    _, files = report
    text = _read(files[0])
    assert '<tr><td>changed</td><td class="number">48</td></tr>' in text
    assert '<tr><td>removed</td><td class="number">12</td></tr>' in text


def test_report_sample_counts(report):
    _, files = report
    text = _read(files[0])
    assert '<tr><td>audit</td><td class="number">6</td></tr>' in text
    assert '<tr><td>batch</td><td class="number">54</td></tr>' in text


def test_report_iteration_counts(report):
    _, files = report
    text = _read(files[0])
    assert "<caption>By iteration and status</caption>" in text
    assert re.search(r'<tr><td class="number">5</td>(<td class="number">\d+</td>)+<td class="number">12</td></tr>', text)


def test_report_recent_records(tmp_path):
    files = write_report(tmp_path / "r.html", history=_history(), audit=_audit(), recent=10)
    text = _read(files[0])
    assert "Most recent 10 of 60 cleaned records, newest first" in text
    assert text.count("-&gt;") <= 2 * 10


def test_report_changed_values(report):
    _, files = report
    text = _read(files[0])
    # Keys 10 to 58 are among the 50 most recent records listed.
    record = next(r for r in _audit()[10:-1] if r["error_class"] == "name+price")
    key = record["key"]
    assert f"name: item {key} -&gt; Item {key}<br>price: {-float(key):.5g} -&gt; {float(key):.5g}" in text


def test_report_summary_values(report):
    _, files = report
    text = _read(files[0])
    assert '<tr><td>records in table</td><td class="number">1000</td></tr>' in text
    assert '<tr><td>clean accuracy</td><td class="number">n/a</td></tr>' in text


def test_report_metric_columns(report):
    _, files = report
    text = _read(files[0])
    assert "<th>test accuracy</th>" in text
    assert "<th>model error</th>" in text


def test_report_metric_name(tmp_path):
    files = write_report(tmp_path / "r.html", history=_history(), audit=[], metric_name="f1")
    assert "<th>test f1</th>" in _read(files[0])


def test_report_non_finite(tmp_path):
    history = _history()
    history[1]["step_norm"] = math.inf
    history[2]["test"]["accuracy"] = math.nan
    files = write_report(tmp_path / "r.html", history=history, audit=[])
    text = DATA_URI.sub("", _read(files[0]))
    assert text.count('<td class="number">n/a</td>') == 2
    assert "inf" not in text
    assert "nan" not in text.lower()


# ---------------------------------------------------------------------------
# Escaping and self-containment
# ---------------------------------------------------------------------------


def test_report_escapes_dirty_value(report):
    _, files = report
    text = _read(files[0])
    assert "name: &lt;script&gt;alert(1)&lt;/script&gt; -&gt;" in text
    assert "<script" not in text.lower()


def test_report_escapes_key(report):
    _, files = report
    text = _read(files[0])
    assert "<td>&lt;b&gt;x&lt;/b&gt;</td>" in text
    assert BOLD not in text


def test_report_escapes_title(report):
    _, files = report
    text = _read(files[0])
    assert "<title>Session &lt;i&gt;one&lt;/i&gt;</title>" in text
    assert "<i>" not in text


def test_report_escapes_class_names(tmp_path):
    audit = _audit()
    audit[0]["error_class"] = SCRIPT
    audit[0]["changed_columns"] = ["<u>col</u>"]
    files = write_report(tmp_path / "r.html", history=[], audit=audit)
    text = _read(files[0])
    assert "<td>&lt;script&gt;alert(1)&lt;/script&gt;</td>" in text
    assert "&lt;u&gt;col&lt;/u&gt;" in text
    assert "<script" not in text.lower()
    assert "<u>" not in text


def test_report_no_external_resources(report):
    _, files = report
    text = DATA_URI.sub("data:image/png;base64,", _read(files[0]))
    assert "http" not in text.lower()
    assert "url(" not in text
    assert "@import" not in text
    assert "<link" not in text


def test_report_only_data_images(report):
    _, files = report
    sources = re.findall(r'src="([^"]*)"', _read(files[0]))
    assert len(sources) == 2
    assert all(source.startswith("data:image/png;base64,") for source in sources)


# ---------------------------------------------------------------------------
# Empty inputs and input checks
# ---------------------------------------------------------------------------


def test_report_empty_history(tmp_path):
    files = write_report(tmp_path / "r.html", history=[], audit=_audit())
    assert [os.path.basename(path) for path in files] == ["r.html", "r-classes.png"]
    text = _read(files[0])
    assert "No iteration has run yet" in text
    assert text.count("data:image/png;base64,") == 1


def test_report_empty_session(tmp_path):
    files = write_report(tmp_path / "r.html", history=[], audit=[])
    assert [os.path.basename(path) for path in files] == ["r.html"]
    text = _read(files[0])
    assert "No iteration has run yet" in text
    assert text.count("No record has been cleaned yet.") == 2
    assert '<tr><td>iterations run</td><td class="number">0</td></tr>' in text


def test_report_history_without_metric(tmp_path):
    history = [{"iteration": t, "cleaned": 10 * t, "step_norm": 0.0} for t in range(1, 4)]
    files = write_report(tmp_path / "r.html", history=history, audit=[])
    text = _read(files[0])
    assert "<th>step norm</th>" in text
    assert "test " not in re.sub(r"<p>.*?</p>", "", text)


def test_report_audit_without_class(tmp_path):
    audit = [{"key": k, "iteration": 1, "status": "changed", "changed_columns": ["a"]} for k in range(4)]
    files = write_report(tmp_path / "r.html", history=[], audit=audit)
    assert '<tr><td>unclassified</td><td class="number">4</td>' in _read(files[0])


@pytest.mark.parametrize(
    "arguments, error, message",
    [
        ({"history": {"iteration": 1}}, TypeError, "history must be a list"),
        ({"history": [{"iteration": 1, "cleaned": 3}]}, ValueError, r"history\[0\] is missing 'step_norm'"),
        ({"audit": [{"key": 1, "status": "changed"}]}, ValueError, r"audit\[0\] is missing 'iteration'"),
        ({"audit": ["record"]}, TypeError, r"audit\[0\] must be a dict"),
        ({"summary": [("seed", 1)]}, TypeError, "summary must be a dict"),
        ({"diagnosis": "view"}, TypeError, "diagnosis must be a Diagnosis"),
        ({"recent": 0}, ValueError, "recent must be a positive integer"),
        ({"history": _history(), "metric_name": "rmse"}, ValueError, "metric_name 'rmse'.*accuracy, f1"),
    ],
)
def test_report_invalid_input(tmp_path, arguments, error, message):
    call = {"history": [], "audit": []}
    call.update(arguments)
    with pytest.raises(error, match=message):
        write_report(tmp_path / "r.html", **call)


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, text",
    [
        (None, ""),
        (math.nan, "n/a"),
        (-math.inf, "n/a"),
        (np.float32("nan"), "n/a"),
        (pd.NA, "n/a"),
        (True, "True"),
        (np.int64(12), "12"),
        (0.123456789, "0.12346"),
        ("x" * 300, "x" * 199 + "…"),
        ({"accuracy": 0.8, "rmse": math.inf}, "accuracy: 0.8, rmse: n/a"),
        ([1, None, 2.5], "1, , 2.5"),
    ],
)
def test_format_value_cases(value, text):
    assert format_value(value) == text


def test_html_table_escapes():
    table = html_table(pd.DataFrame({"<th>": [SCRIPT]}), caption="<caption>")
    assert "<th>&lt;th&gt;</th>" in table
    assert "<td>&lt;script&gt;alert(1)&lt;/script&gt;</td>" in table
    assert "<caption>&lt;caption&gt;</caption>" in table


def test_report_without_matplotlib(tmp_path, monkeypatch):
    # A None entry in sys.modules makes the import raise ImportError.
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"activeclean_spark\[report\]"):
        write_report(tmp_path / "r.html", history=_history(), audit=[])
