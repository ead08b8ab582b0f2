"""Shared fixtures: one local[2] Spark session bound to loopback, and generated data."""

from __future__ import annotations

import os
import sys

import numpy as np
import pandas as pd
import pytest

os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
os.environ["PYSPARK_PYTHON"] = sys.executable
os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable

# Python workers import what the tests define (a user loss, a cleaner) by
# module name, as executors import a user's shipped modules.
TESTS = os.path.dirname(os.path.abspath(__file__))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [TESTS, os.environ.get("PYTHONPATH")]))

SHARED_DATA = os.path.join(TESTS, "..", "..", "shared", "data")


@pytest.fixture(scope="session")
def spark():
    from activeclean_spark.session import get_spark

    session = get_spark(
        "local[2]",
        {"spark.sql.shuffle.partitions": "2", "spark.default.parallelism": "2", "spark.driver.memory": "1g"},
        app_name="activeclean-tests",
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    # stop() ends the SparkContext but leaves the JVM that pyspark launched
    # running until Python exits, so the JVM is stopped by its own pid.
    gateway = session.sparkContext._gateway
    session.stop()
    process = getattr(gateway, "proc", None)
    gateway.shutdown()
    if process is not None:
        process.terminate()
        process.wait(timeout=60)


def make_tables(n=600, d=4, rate=0.2, seed=0):
    """Return ``(dirty, clean)`` pandas tables for a logistic task with known corruption.

    Clean features are Gaussian and labels follow a logistic model.  On a
    ``rate`` share of records, feature ``x0`` is scaled by -3 (a systematic
    sign and unit error), which biases the dirty model's weight on ``x0``.
    A categorical column ``color`` carries signal too.
    """
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    colors = rng.choice(["red", "green", "blue"], n)
    weights = np.linspace(1.5, -1.0, d)
    margin = X @ weights + np.where(colors == "red", 1.0, 0.0) - 0.3
    labels = (rng.random(n) < 1 / (1 + np.exp(-margin))).astype(int)
    clean = pd.DataFrame(X, columns=[f"x{i}" for i in range(d)])
    clean.insert(0, "id", np.arange(n, dtype=np.int64) * 7 + 3)
    clean["color"] = colors
    clean["label"] = labels
    dirty = clean.copy()
    corrupted = rng.random(n) < rate
    dirty.loc[corrupted, "x0"] = -3.0 * clean.loc[corrupted, "x0"]
    return dirty, clean


def make_engine(clean, **options):
    """Return an ActiveClean engine for :func:`make_tables` data with an oracle on ``clean``; options override."""
    from activeclean_spark import ActiveClean, FeatureSpec, LogisticLoss, OracleCleaner

    params = dict(
        key="id",
        features=FeatureSpec(label="label", numeric=["x0", "x1", "x2", "x3"], categorical=["color"], positive=1),
        loss=LogisticLoss(reg=0.01),
        cleaner=OracleCleaner(clean, "id"),
        budget=60,
        batch_size=20,
        num_partitions=2,
    )
    params.update(options)
    return ActiveClean(**params)


@pytest.fixture(scope="session")
def tables():
    return make_tables()
