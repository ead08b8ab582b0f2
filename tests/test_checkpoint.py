"""Checkpoint and resume: sliced runs, driver kills at every stage of an iteration, damaged and foreign checkpoints."""

import hashlib
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from activeclean_spark import Checkpoints, CheckpointError, RecordCleaner
from activeclean_spark.checkpoint import JOURNAL
from activeclean_spark.cli import main
from activeclean_spark.cleaners import CleanerError
from activeclean_spark.config import ConfigError, load_config
from conftest import make_engine, make_tables
from interrupted_run import run_job
from test_job import _write_config

TESTS = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def data(spark):
    dirty, clean = make_tables(n=400, seed=3)
    engine = make_engine(clean, budget=80, batch_size=20)
    prepared = engine.prepare(spark.createDataFrame(dirty))
    yield engine, prepared, clean
    prepared.release()


@pytest.fixture(scope="module")
def uninterrupted(data):
    engine, prepared, _ = data
    return engine.run(prepared)


def _files(directory):
    """Return every file under a directory with the digest of its bytes."""
    found = {}
    for root, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as handle:
                found[os.path.relpath(path, directory)] = hashlib.sha256(handle.read()).hexdigest()
    return found


def _same_cleaning(result, expected):
    # The same process and partitioning add the same numbers in the same
    # order, so the models agree to the last bit.  The tolerance only allows
    # for a platform's fused multiply-add.
    np.testing.assert_allclose(result.model.theta, expected.model.theta, rtol=1e-12, atol=1e-14)
    assert result.n_cleaned == expected.n_cleaned
    assert result.cleaned.to_pylist() == expected.cleaned.to_pylist()
    assert [r["cleaned"] for r in result.history] == [r["cleaned"] for r in expected.history]


@pytest.mark.parametrize("location", ["local", "hadoop"])
def test_sliced_runs_equal_one_run(data, uninterrupted, tmp_path, location):
    """Three runs of at least 30 records each, every one resuming from the checkpoint, equal one run."""
    engine, prepared, _ = data
    # A file:// URI goes through Hadoop's FileSystem API, as hdfs:// and s3a:// paths do.
    path = str(tmp_path / "checkpoint") if location == "local" else (tmp_path / "checkpoint").as_uri()
    cleaned = []
    for _ in range(3):
        result = engine.run(prepared, checkpoint=path, max_records=30)
        cleaned.append(result.n_cleaned)
    assert cleaned[0] >= 30
    assert cleaned[1] >= 60
    assert cleaned[2] == 80
    _same_cleaning(result, uninterrupted)
    # Two checkpoints are kept, and the journal contains nothing of finished iterations.
    checkpoints = Checkpoints(path)
    assert len(checkpoints.iterations()) == 2
    assert not [name for name in checkpoints.storage.list(checkpoints.storage.join(path, JOURNAL))
                if not name.startswith(".")]
    # A run after the budget is spent resumes and changes nothing.
    _same_cleaning(engine.run(prepared, checkpoint=path), uninterrupted)


def test_outputs_continue_after_resume(data, uninterrupted, tmp_path):
    engine, prepared, _ = data
    out, checkpoint = str(tmp_path / "out"), str(tmp_path / "checkpoint")
    engine.run(prepared, output_dir=out, checkpoint=checkpoint, max_records=40)
    result = engine.run(prepared, output_dir=out, checkpoint=checkpoint)
    _same_cleaning(result, uninterrupted)
    with open(os.path.join(out, "audit.jsonl")) as handle:
        audit = [json.loads(line) for line in handle]
    with open(os.path.join(out, "history.jsonl")) as handle:
        history = [json.loads(line) for line in handle]
    assert len(audit) == uninterrupted.n_cleaned
    assert [line["iteration"] for line in history] == list(range(1, len(uninterrupted.history) + 1))
    table = pd.read_parquet(os.path.join(out, "cleaned_table"))
    assert int(table["_cleaned"].sum()) == uninterrupted.cleaned.num_rows
    assert not [name for name in os.listdir(out) if name.endswith((".writing", ".old"))]


def test_failed_cleaner_records_reused(data, uninterrupted, tmp_path):
    """Records a record cleaner returned before it raised are not cleaned again after the fix."""
    engine, prepared, clean = data
    by_key = clean.set_index("id", drop=False)
    requested, failures = [], []

    def lookup(record):
        requested.append(record["id"])
        if len(requested) == 30 and not failures:
            failures.append(record["id"])
            raise RuntimeError("reference service unavailable")
        return by_key.loc[record["id"]].to_dict()

    checkpoint = str(tmp_path / "checkpoint")
    with pytest.raises(CleanerError, match="reference service unavailable"):
        engine.clone(cleaner=RecordCleaner(lookup)).run(prepared, checkpoint=checkpoint)
    returned_before = requested[:29]
    requested.clear()
    result = engine.clone(cleaner=RecordCleaner(lookup)).run(prepared, checkpoint=checkpoint)
    _same_cleaning(result, uninterrupted)
    assert not set(returned_before) & set(requested)
    assert len(requested) + len(returned_before) == uninterrupted.n_cleaned


def test_other_parameters_rejected(data, tmp_path):
    engine, prepared, _ = data
    checkpoint = str(tmp_path / "checkpoint")
    first = engine.run(prepared, checkpoint=checkpoint, max_records=20).n_cleaned
    before = _files(checkpoint)
    with pytest.raises(CheckpointError, match=r"batch_size: 20 in the checkpoint, 10 now"):
        engine.clone(batch_size=10).run(prepared, checkpoint=checkpoint)
    with pytest.raises(CheckpointError, match=r"seed: 0 in the checkpoint, 5 now"):
        engine.clone(seed=5).run(prepared, checkpoint=checkpoint)
    assert _files(checkpoint) == before
    # The budget may grow between runs of one job.
    assert engine.clone(budget=100).run(prepared, checkpoint=checkpoint, max_records=1).n_cleaned > first


def test_other_input_rejected(spark, data, tmp_path):
    engine, prepared, clean = data
    checkpoint = str(tmp_path / "checkpoint")
    engine.run(prepared, checkpoint=checkpoint, max_records=20)
    before = _files(checkpoint)
    dirty, _ = make_tables(n=400, seed=3)
    dirty.loc[5, "x1"] += 1.0  # one value of one record differs
    other = engine.prepare(spark.createDataFrame(dirty))
    try:
        with pytest.raises(CheckpointError, match="input.content digest"):
            engine.run(other, checkpoint=checkpoint)
    finally:
        other.release()
    assert _files(checkpoint) == before


@pytest.mark.parametrize("damage", ["flipped byte", "truncated", "file removed"])
def test_damaged_checkpoint_rejected(data, tmp_path, damage):
    engine, prepared, _ = data
    checkpoint = str(tmp_path / "checkpoint")
    engine.run(prepared, checkpoint=checkpoint, max_records=20)
    latest = os.path.join(checkpoint, f"checkpoint-{Checkpoints(checkpoint).latest():06d}")
    arrays = os.path.join(latest, "arrays.npz")
    if damage == "flipped byte":
        with open(arrays, "r+b") as handle:
            handle.seek(200)
            byte = handle.read(1)
            handle.seek(200)
            handle.write(bytes([byte[0] ^ 0xFF]))
        expected = r"arrays.npz' has \d+ bytes and digest .* it is damaged"
    elif damage == "truncated":
        with open(arrays, "r+b") as handle:
            handle.truncate(100)
        expected = r"arrays.npz' has 100 bytes"
    else:
        os.remove(os.path.join(latest, "rows.arrow"))
        expected = "lacks its file 'rows.arrow'; it is damaged"
    before = _files(checkpoint)
    with pytest.raises(CheckpointError, match=expected):
        engine.run(prepared, checkpoint=checkpoint)
    assert _files(checkpoint) == before


def test_checkpoint_options_validated(tmp_path):
    dirty, clean = make_tables(n=50)
    config = _write_config(tmp_path, dirty, clean)
    with pytest.raises(ConfigError, match="checkpoint.keep must be a positive integer, got 0"):
        load_config(config, ["checkpoint.keep=0"])
    with pytest.raises(ConfigError, match="checkpoint.records_per_run needs checkpoint.dir"):
        load_config(config, ["checkpoint.records_per_run=100"])
    with pytest.raises(ValueError, match="max_records must be a positive integer"):
        make_engine(clean).run(None, max_records=0)


def test_job_resumes_from_checkpoint(spark, tmp_path, capsys):
    dirty, clean = make_tables(n=400, seed=9)
    config = _write_config(tmp_path, dirty, clean)
    run = ["run", config, "--quiet", "--set", f'checkpoint.dir="{tmp_path / "state"}"',
           "--set", "checkpoint.records_per_run=30"]
    assert main(run) == 0
    assert 30 <= json.loads(capsys.readouterr().out)["records_cleaned"] < 60
    assert main(run) == 0
    assert json.loads(capsys.readouterr().out)["records_cleaned"] == 60
    with open(tmp_path / "out" / "audit.jsonl") as handle:
        assert len(handle.readlines()) == 60
    assert main([*run, "--set", "run.batch_size=10"]) == 2
    error = capsys.readouterr().err
    assert "belongs to another job (parameters.batch_size: 20 in the checkpoint, 10 now)" in error


# -- driver kills ---------------------------------------------------------------


def _driver(checkpoint, output, calls, point, count=1, timeout=600):
    """Run tests/interrupted_run.py in its own process group and return its exit status."""
    command = [sys.executable, os.path.join(TESTS, "interrupted_run.py"), str(checkpoint), str(output), str(calls),
               point, str(count)]
    process = subprocess.Popen(command, cwd=TESTS, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    try:
        log, _ = process.communicate(timeout=timeout)
    finally:
        # The JVM that the driver started exits when its pipe closes; the
        # group kill covers a JVM that did not.
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()
    return process.returncode, log


def _model(directory):
    with open(os.path.join(directory, "model.json")) as handle:
        model = json.load(handle)
    return np.array([*model["coefficients"].values(), model["intercept"]])


def _audit_keys(directory):
    with open(os.path.join(directory, "audit.jsonl")) as handle:
        return [json.loads(line)["key"] for line in handle]


@pytest.mark.slow
def test_driver_kills_resume_same_model(spark, tmp_path):
    """SIGKILL the driver inside the cleaner, before the update, while a checkpoint is written
    and while the outputs are written.  Each rerun resumes, and the last one ends with the
    model, table and audit trail of a run that was never stopped.
    """
    reference = tmp_path / "reference"
    run_job(spark, None, reference, tmp_path / "reference_calls")

    calls, checkpoint, out = tmp_path / "calls", tmp_path / "checkpoint", tmp_path / "out"
    # Each kill counts its point from the start of its own process; see interrupted_run.py.
    kills = [("cleaner", 30), ("update", 2), ("save", 2), ("outputs", 1)]
    for point, count in kills:
        status, log = _driver(checkpoint, out, calls, point, count)
        assert status == -signal.SIGKILL, f"{point}: exit {status}\n{log[-3000:]}"
    # The last run resumes in this process, on the same local[2] partitioning.
    run_job(spark, str(checkpoint), out, calls)

    # Every run adds the same numbers in the same order, so the models agree to rounding.
    np.testing.assert_allclose(_model(out), _model(reference), rtol=1e-10, atol=1e-12)
    assert _audit_keys(out) == _audit_keys(reference)
    with open(out / "history.jsonl") as mine, open(reference / "history.jsonl") as theirs:
        assert [json.loads(line)["cleaned"] for line in mine] == [json.loads(line)["cleaned"] for line in theirs]
    columns = ["id", "x0", "x1", "x2", "x3", "color", "label", "_cleaned"]
    table = pd.read_parquet(out / "cleaned_table")[columns].sort_values("id").reset_index(drop=True)
    expected = pd.read_parquet(reference / "cleaned_table")[columns].sort_values("id").reset_index(drop=True)
    pd.testing.assert_frame_equal(table, expected)
    # No record the cleaner returned was requested again: only the one it was
    # cleaning when the first kill struck reached it twice.
    requested = calls.read_text().split()
    assert len(requested) == len(set(requested)) + 1
    assert len(set(requested)) == len(_audit_keys(reference))
    # The checkpoint cut off while being written was replaced by a complete one.
    assert all(os.path.exists(checkpoint / name / "manifest.json") for name in os.listdir(checkpoint)
               if name.startswith("checkpoint-"))
