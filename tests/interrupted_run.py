"""A driver that runs one job with a checkpoint and kills itself with SIGKILL at a chosen point.

Usage: python interrupted_run.py CHECKPOINT OUTPUT CALLS POINT [N]

POINT is where the process kills itself, on the N-th time it gets there in
this process:

* ``none``: run to the end;
* ``cleaner``: inside the record cleaner, before it returns the N-th record;
* ``update``: after the cleaner returned the N-th batch, before the update;
* ``save``: while writing the N-th checkpoint, its files written but its manifest not yet in place;
* ``outputs``: while the final cleaned table is being written.

CHECKPOINT ``-`` runs without a checkpoint.  :func:`run_job` runs the same
job in a test's own session.

The record cleaner appends every key it is asked to clean to CALLS, so the
test can count how often a record reached the cleaner across all runs.
"""

import os
import signal
import sys

from conftest import make_engine, make_tables

from activeclean_spark import RecordCleaner, engine, output, storage
from activeclean_spark.session import get_spark

N_RECORDS, SEED = 400, 3


def kill_on(count: int):
    """Return a function that kills this process on its ``count``-th call."""
    calls = [0]

    def maybe_kill():
        calls[0] += 1
        if calls[0] == count:
            os.kill(os.getpid(), signal.SIGKILL)

    return maybe_kill


def wrap(owner, name, before):
    original = getattr(owner, name)

    def wrapped(*args, **kwargs):
        before(*args)
        return original(*args, **kwargs)

    setattr(owner, name, wrapped)


def run_job(spark, checkpoint, output_dir, calls_path, before_return=None):
    """Run the job with a record cleaner that looks records up in the clean table and logs each key to ``calls_path``."""
    dirty, clean = make_tables(n=N_RECORDS, seed=SEED)
    by_key = clean.set_index("id", drop=False)

    def fix(record):
        with open(calls_path, "a") as calls:
            calls.write(f"{record['id']}\n")
        if before_return is not None:
            before_return()
        return by_key.loc[record["id"]].to_dict()

    job = make_engine(clean, cleaner=RecordCleaner(fix), budget=100, batch_size=20)
    return job.fit(spark.createDataFrame(dirty), output_dir=str(output_dir), checkpoint=checkpoint)


def main(checkpoint, output_dir, calls_path, point, count=1):
    trigger = kill_on(int(count))
    if point == "update":
        wrap(engine.ActiveClean, "_sgd_step", lambda *args: trigger())
    elif point == "save":
        wrap(storage.LocalStorage, "rename",
             lambda self, source, target: trigger() if os.path.basename(target) == "manifest.json" else None)
    elif point == "outputs":
        wrap(output, "publish_table", lambda *args: trigger())

    # C1-compiled code and the serial collector halve the JVM's start-up work for a job this small.
    spark = get_spark("local[2]", {"spark.default.parallelism": "2", "spark.sql.shuffle.partitions": "2",
                                   "spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"})
    spark.sparkContext.setLogLevel("ERROR")
    run_job(spark, None if checkpoint == "-" else checkpoint, output_dir, calls_path,
            trigger if point == "cleaner" else None)
    spark.stop()


if __name__ == "__main__":
    main(*sys.argv[1:])
