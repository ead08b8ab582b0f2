"""Multi-process tier: the job through spark-submit on a local-cluster master.

local-cluster[2,1,1024] starts a standalone master and two worker JVMs with
their own Python workers, so closures, broadcasts and cached blocks cross
process boundaries as on a real cluster.  The result must equal the
in-process local[2] run with the same seed and partitioning.
"""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from activeclean_spark.cli import main
from conftest import make_tables
from test_job import _write_config

pytestmark = pytest.mark.cluster

SPARK_SUBMIT = os.path.join(os.path.dirname(sys.executable), "spark-submit")
JOB = os.path.join(os.path.dirname(__file__), "..", "jobs", "activeclean_job.py")


def _submit(config, output_dir, timeout=600):
    environment = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=sys.executable,
                       PYSPARK_DRIVER_PYTHON=sys.executable)
    command = [
        SPARK_SUBMIT,
        "--master", "local-cluster[2,1,1024]",
        "--conf", "spark.driver.host=127.0.0.1",
        "--conf", "spark.driver.bindAddress=127.0.0.1",
        "--conf", "spark.ui.enabled=false",
        "--conf", "spark.executor.memory=768m",
        JOB, config, "--quiet", "--set", f'output.dir="{output_dir}"',
    ]
    # A session of its own, so the driver and the worker JVMs it forks can be
    # stopped together by process group if the run hangs.
    process = subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True, text=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    return process.returncode, stdout, stderr


def _model(directory):
    return json.loads((directory / "model.json").read_text())


def _audit_keys(directory):
    with open(directory / "audit.jsonl") as handle:
        return [json.loads(line)["key"] for line in handle]


def test_cluster_run_equals_local_run(spark, tmp_path):
    dirty, clean = make_tables(n=400, seed=9)
    config = _write_config(tmp_path, dirty, clean)
    assert main(["run", config, "--quiet"]) == 0
    local = tmp_path / "out"

    cluster = tmp_path / "cluster_out"
    status, stdout, stderr = _submit(config, cluster)
    assert status == 0, stderr[-3000:]
    assert json.loads(stdout[stdout.index("{"):])["records_cleaned"] == 60

    assert _audit_keys(cluster) == _audit_keys(local)
    local_model, cluster_model = _model(local), _model(cluster)
    assert list(cluster_model["coefficients"]) == list(local_model["coefficients"])
    # Partition sums may be combined in another order across processes, so
    # the floating-point results agree to rounding, not bit for bit.
    np.testing.assert_allclose(
        list(cluster_model["coefficients"].values()), list(local_model["coefficients"].values()), rtol=1e-6, atol=1e-9
    )
    assert cluster_model["intercept"] == pytest.approx(local_model["intercept"], rel=1e-6, abs=1e-9)
