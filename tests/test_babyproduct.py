"""The shipped BabyProduct job on its real dirty table, over five seeds."""

import os

import numpy as np
import pytest

from activeclean_spark.config import load_config
from activeclean_spark.job import build_job
from conftest import SHARED_DATA

pytestmark = pytest.mark.slow

FOLDER = os.path.join(SHARED_DATA, "cpclean_babyproduct")
CONFIG = os.path.join(os.path.dirname(__file__), "..", "conf", "babyproduct.toml")


@pytest.mark.skipif(not os.path.isdir(FOLDER), reason="BabyProduct data not found beside the repository")
def test_babyproduct_improves_on_dirty_model(spark):
    overrides = [
        f'input.path="{os.path.join(FOLDER, "dirty.csv")}"',
        f'cleaner.path="{os.path.join(FOLDER, "clean.csv")}"',
    ]
    engine, dirty, test, reference, _ = build_job(load_config(CONFIG, overrides), spark)
    prepared = engine.prepare(dirty, test=test, reference=reference)
    try:
        theta_c = prepared.reference_model.theta
        dirty_error = np.linalg.norm(prepared.dirty_model.theta - theta_c) / np.linalg.norm(theta_c)
        dirty_accuracy = prepared.dirty_model.metrics["test"]["accuracy"]
        accuracies, errors = [], []
        for seed in range(5):
            engine.seed = seed
            result = engine.run(prepared)
            accuracies.append(result.model.metrics["test"]["accuracy"])
            errors.append(result.model.metrics["model_error"])
    finally:
        prepared.release()
    # Cleaning 10% of the records must move every seed's model toward the
    # fully clean one, and the held-out accuracy above the dirty model's on
    # average over the seeds.
    assert max(errors) < dirty_error, (errors, dirty_error)
    assert np.mean(accuracies) > dirty_accuracy, (accuracies, dirty_accuracy)
