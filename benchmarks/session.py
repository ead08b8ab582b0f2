"""Time the steps of an interactive cleaning session on the real beers table.

Runs the scripted analyst of tests/beers_session.py in a local[2] session,
which needs the beers data beside the repository.  It prints a Markdown
table of the seconds each step took.  The steps are opening the session
(cache and dirty model), every batch (scoring pass, hand-backs and the
model's step), the class application, diagnose with t-SNE and with PCA,
the report, save and load.

    .venv/bin/python benchmarks/session.py > docs/session_benchmark.md
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time

TESTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests")
sys.path.insert(0, TESTS)
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

import beers_session  # noqa: E402


def processor() -> str:
    """Return the CPU model from /proc/cpuinfo, or what the platform module reports."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    from activeclean_spark import get_spark
    from activeclean_spark.interactive import CleaningSession

    if not os.path.isdir(beers_session.FOLDER):
        sys.exit(f"beers data not found at {beers_session.FOLDER}")
    spark = get_spark("local[2]", {"spark.sql.shuffle.partitions": "2", "spark.default.parallelism": "2"},
                      app_name="session-benchmark")
    spark.sparkContext.setLogLevel("ERROR")
    train, test, clean_by_key = beers_session.spark_tables(spark)
    rows = []

    def timed(step: str, function):
        started = time.perf_counter()
        value = function()
        rows.append((step, time.perf_counter() - started))
        return value

    session = timed("open: cache the table, train the dirty model", lambda: beers_session.open_session(train, test))
    for batch in range(1, beers_session.BATCHES + 1):
        timed(f"batch {batch}: suggest, hand back, step", lambda: beers_session.clean_batch(session, clean_by_key))
        if batch == beers_session.CLASS_AFTER:
            operation = beers_session.operations()[0]
            preview = timed("preview of the ounces class", lambda: session.preview(operation))
            timed(f"apply to the class ({preview.records} records in it)",
                  lambda: session.apply_to_class(operation, preview=preview))
    timed("diagnose, t-SNE, 500 background records", lambda: session.diagnose(method="tsne"))
    timed("diagnose, PCA, 500 background records", lambda: session.diagnose(method="pca"))
    with tempfile.TemporaryDirectory() as directory:
        timed("report (t-SNE)", lambda: session.report(os.path.join(directory, "report.html")))
        timed("save", lambda: session.save(os.path.join(directory, "saved")))
        timed("load in the same Spark session",
              lambda: CleaningSession.load(os.path.join(directory, "saved"), train, test=test, progress=False).close())
    status = session.status()
    session.close()

    print("# Interactive session timings\n")
    print(f"`.venv/bin/python benchmarks/session.py` on {os.cpu_count()} cores ({processor()}), "
          f"Spark {spark.version} local[2], the beers table ({status.records} training records, batch 20).  "
          f"The session ends with {status.records_cleaned} records cleaned.\n")
    print("| step | seconds |")
    print("|---|---:|")
    for step, seconds in rows:
        print(f"| {step} | {seconds:.1f} |")
    spark.stop()


if __name__ == "__main__":
    main()
