"""A cleaning session on the real beers table, scripted as an analyst would drive it.

The analyst fixes by hand the rows whose state is glued onto the city, and
the clean table stands for what they look up.  They remove the rows without
an IBU value and parse the ounces and ABV text of the rest with operations.
After a few batches they apply the ounces operation to its whole error class.

Run as a script, it loads a saved session in a new Spark session, finishes
the script and writes the final model and audit keys to an ``.npz`` file:
``python beers_session.py SAVED_DIR RESULT.npz``.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pandas as pd

from conftest import SHARED_DATA

FOLDER = os.path.join(SHARED_DATA, "raha_beers")
KEY = "index"
BATCHES = 6  # batches of the whole script
SAVED_BATCH = 3  # the batch during which part one saves, with part of the batch handed back
CLASS_AFTER = 4  # the ounces operation is applied to its error class after this batch


def read_tables():
    """Return the dirty and clean beers tables as pandas, text columns as read, the clean headers renamed."""
    options = dict(dtype=str, keep_default_na=False)
    dirty = pd.read_csv(os.path.join(FOLDER, "dirty.csv"), **options)
    clean = pd.read_csv(os.path.join(FOLDER, "clean.csv"), **options)
    # The two files name two columns differently, so they are aligned by position.
    clean.columns = dirty.columns
    for table in (dirty, clean):
        table[KEY] = table[KEY].astype(np.int64)
    return dirty, clean


def spark_tables(spark):
    """Return ``(training table, clean held-out table, clean table by key)``: every fifth record is held out."""
    dirty, clean = read_tables()
    held_out = dirty[KEY] % 5 == 0
    train = spark.createDataFrame(dirty[~held_out])
    test = spark.createDataFrame(clean[held_out & (clean["ibu"] != "")])
    return train, test, clean.set_index(KEY)


def operations():
    from activeclean_spark.operations import ParseNumber

    # The percent sign in the dirty ABV is spurious: "0.05%" is 0.05 in the clean table.
    return [ParseNumber("ounces"), ParseNumber("abv", {"%": 1})]


def open_session(train, test):
    from activeclean_spark import FeatureSpec, LeastSquaresLoss
    from activeclean_spark.interactive import CleaningSession

    # Every dirty ounces value has a unit, so the column has no scale to fit on the dirty data and is left out.
    features = FeatureSpec(label="ibu", task="regression", numeric=["abv"], categorical=["state", "style"])
    return CleaningSession(train, key=KEY, features=features, loss=LeastSquaresLoss(reg=1e-2), test=test,
                           batch_size=20, seed=3, num_partitions=2, progress=False)


def clean_batch(session, clean_by_key, *, manual_only: bool = False) -> None:
    """Hand back the open batch: manual fixes, removals, then the operations for the rest."""
    batch = session.suggest()
    reference = clean_by_key.loc[batch[KEY]].reset_index()
    glued = (batch["city"].to_numpy() != reference["city"].to_numpy()) & (reference["ibu"].to_numpy() != "")
    if glued.any():
        session.clean(reference[glued])
    no_label = (batch["ibu"].to_numpy() == "N/A") & ~glued
    if no_label.any():
        session.remove(batch.loc[no_label, KEY].tolist())
    if manual_only or session.status().batch_pending == 0:
        return
    session.apply(operations())


def finish(session, clean_by_key, first_batch: int) -> None:
    """Run the script from ``first_batch`` on: the rest of an open batch first, then whole batches."""
    for batch in range(first_batch, BATCHES + 1):
        clean_batch(session, clean_by_key)
        if batch == CLASS_AFTER:
            preview = session.preview(operations()[0])
            session.apply_to_class(operations()[0], preview=preview)


def main(saved: str, result: str) -> None:
    from activeclean_spark import get_spark
    from activeclean_spark.interactive import CleaningSession

    spark = get_spark("local[2]", {"spark.sql.shuffle.partitions": "2", "spark.default.parallelism": "2",
                                   "spark.driver.memory": "1g"}, app_name="beers-session-resumed")
    spark.sparkContext.setLogLevel("ERROR")
    train, test, clean_by_key = spark_tables(spark)
    session = CleaningSession.load(saved, train, test=test)
    finish(session, clean_by_key, session.status().iteration + 1)
    np.savez(result, theta=session.model.theta, keys=np.array([r["key"] for r in session.audit]),
             classes=np.array([str(r["error_class"]) for r in session.audit]))
    session.close()
    spark.stop()


if __name__ == "__main__":
    main(*sys.argv[1:3])
