"""Multi-process tier: the job through spark-submit on a standalone master.

The module starts one standalone cluster on 127.0.0.1, a master and two
one-core workers in processes of their own (see ``standalone.py``), and
submits ``jobs/activeclean_job.py`` to it with ``--py-files
activeclean_spark.zip``.  Closures, broadcasts and cached blocks cross
process boundaries as on a real cluster.  A run must equal the in-process
local[2] run with the same seed and partitioning, also when a worker dies
with its executor in the middle of the run.

The worker-loss test leaves the cluster with one worker, so it comes last.
"""

import json
import re
import time
from pathlib import Path

import pytest

from activeclean_spark.cli import main
from conftest import make_tables
from standalone import (
    Submission,
    StandaloneCluster,
    application_id,
    assert_ran_on_executors,
    assert_same_run,
    build_package_zip,
    history_length,
    listening_sockets,
    start_job,
    submit_job,
)
from test_job import _write_config

pytestmark = pytest.mark.cluster

# Two executors of one core each, one on each worker.
STANDALONE_CONF = {"spark.cores.max": "2"}

# Submitted with the package zip: imports activeclean_spark first, as the
# job does, and prints where the driver and an executor import it from.
PROBE = '''
import json
import os
import sys

import activeclean_spark
from pyspark.sql import SparkSession


def locate(_):
    import activeclean_spark

    return {
        "file": activeclean_spark.__file__,
        "loader": type(activeclean_spark.__loader__).__name__,
        "cwd": os.getcwd(),
        "path": sys.path,
    }


spark = SparkSession.builder.appName("activeclean-probe").getOrCreate()
executor = spark.sparkContext.parallelize([0], 1).map(locate).collect()[0]
print(json.dumps({"driver": activeclean_spark.__file__, "executor": executor}))
spark.stop()
'''


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cluster = StandaloneCluster(tmp_path_factory.mktemp("standalone"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def package_zip(tmp_path_factory):
    return build_package_zip(tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="module")
def job_config(tmp_path_factory):
    directory = tmp_path_factory.mktemp("job")
    dirty, clean = make_tables(n=400, seed=9)
    return _write_config(directory, dirty, clean)


@pytest.fixture(scope="module")
def local_run(spark, job_config):
    """The output directory of the in-process local[2] run of ``job_config``."""
    assert main(["run", job_config, "--quiet"]) == 0
    return Path(job_config).parent / "out"


@pytest.fixture(scope="module")
def standalone_run(cluster, package_zip, job_config):
    """The finished, undisturbed run of ``job_config`` on the standalone cluster."""
    output = Path(job_config).parent / "standalone_out"
    run = submit_job(cluster.url, job_config, output, py_files=[package_zip], conf=STANDALONE_CONF)
    return run, output


def test_daemons_listen_on_loopback_only(cluster):
    sockets = listening_sockets(cluster.pids())
    # Every daemon listens at least for RPC and for its web UI.
    assert {pid for pid, _, _ in sockets} == {daemon.process.pid for daemon in cluster.daemons}
    assert [entry for entry in sockets if entry[1] != "127.0.0.1"] == []


def test_executors_import_shipped_zip(cluster, package_zip, tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    # One task needs one executor.
    with Submission(cluster.url, probe, [], tmp_path, py_files=[package_zip], conf={"spark.cores.max": "1"},
                    name="probe") as run:
        status = run.wait()
    assert status == 0, run.stderr[-3000:]
    located = json.loads(run.stdout.strip().splitlines()[-1])

    assert located["driver"] == str(package_zip / "activeclean_spark" / "__init__.py")
    executor = located["executor"]
    assert executor["loader"] == "zipimporter"
    # The executor fetched the zip into its working directory, under the worker's.
    archive = Path(executor["cwd"], executor["file"]).parent.parent
    assert archive.name == package_zip.name
    assert archive.resolve().is_relative_to(cluster.directory.resolve()), archive
    # Spark puts the zip in front of site-packages, so it also wins over a
    # regular install.  The editable install's finder comes after all of sys.path.
    path = executor["path"]
    archive_entries = [index for index, entry in enumerate(path) if entry.endswith(package_zip.name)]
    site_packages = [index for index, entry in enumerate(path) if entry.endswith("site-packages")]
    assert len(archive_entries) == 1
    assert archive_entries[0] < min(site_packages)


def _assert_run_equals_local_run(run, output, local_run):
    assert run.process.returncode == 0, run.stderr[-3000:]
    assert json.loads(run.stdout[run.stdout.index("{"):])["records_cleaned"] == 60
    assert_ran_on_executors(run)
    assert_same_run(output, local_run)


def test_standalone_run_equals_local_run(standalone_run, local_run):
    run, output = standalone_run
    _assert_run_equals_local_run(run, output, local_run)


def test_run_survives_worker_loss(cluster, package_zip, job_config, standalone_run, tmp_path):
    undisturbed_run, undisturbed = standalone_run
    assert undisturbed_run.process.returncode == 0, undisturbed_run.stderr[-3000:]
    output = tmp_path / "out"
    with start_job(cluster.url, job_config, output, py_files=[package_zip], conf=STANDALONE_CONF) as run:
        deadline = time.monotonic() + 600
        while history_length(output) == 0:
            assert run.process.poll() is None, f"the run ended before its first iteration\n{run.stderr[-3000:]}"
            assert time.monotonic() < deadline, f"no iteration finished in 600 s\n{run.stderr[-3000:]}"
            time.sleep(0.1)
        sockets = listening_sockets([*cluster.pids(), *run.pids()])
        lines_at_kill = history_length(output)
        killed = cluster.kill_worker(0)
        finished_at_kill = (output / "model.json").exists()
        status = run.wait()

    assert status == 0, run.stderr[-3000:]
    assert_ran_on_executors(run)
    # The kill took the worker's executor JVM and its Python daemon with it.
    executor_jvms = [pid for pid, command in killed.items() if "CoarseGrainedExecutorBackend" in command]
    assert executor_jvms
    assert any("pyspark.daemon" in command for command in killed.values())
    # The executors, their Python workers and the driver listen on loopback too.
    assert any(pid in executor_jvms for pid, _, _ in sockets)
    assert [entry for entry in sockets if entry[1] != "127.0.0.1"] == []
    # The kill landed while the run was in progress.
    assert not finished_at_kill
    assert lines_at_kill < history_length(output)
    # The killed worker's executor had run tasks, and the driver recorded its loss.
    executors = cluster.executor_ids(0, application_id(run))
    assert executors, f"worker 0 launched no executor\n{cluster.logs()}"
    for executor in executors:
        assert re.search(rf"Finished task .* \(executor {executor}\)", run.stderr)
        assert f"Lost executor {executor} " in run.stderr
    assert_same_run(output, undisturbed)
