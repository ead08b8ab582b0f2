"""Spark session set-up shared by the jobs, the command line and the tests."""

from __future__ import annotations

import logging
import os
import sys

logger = logging.getLogger(__name__)

# Settings for a session this package starts itself.  They bind the driver
# to loopback and keep the web UI off, so a local run opens no port on
# another interface.  A user's own settings override them.
LOCAL_DEFAULTS = {
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.ui.enabled": "false",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.shuffle.partitions": "8",
    "spark.python.worker.reuse": "true",
}


def python_environment() -> None:
    """Point Spark's Python workers at the running interpreter.

    Without this, executors start whatever ``python3`` is first on the PATH,
    which may lack numpy and pyarrow.  A value the user already exported wins.
    """
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)


def get_spark(master: str | None = None, conf: dict | None = None, app_name: str = "activeclean"):
    """Return the active Spark session, or start one.

    Parameters
    ----------
    master : str, optional
        Master URL for a session started here, default ``local[*]``.  It is
        ignored when spark-submit already set ``spark.master``, so the same
        job runs unchanged on a cluster.
    conf : dict, optional
        Extra Spark settings for a session started here.
    app_name : str, default="activeclean"
        Application name shown by the cluster manager.
    """
    from pyspark import SparkConf
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active

    spark_conf = SparkConf()
    # spark-submit starts the driver's JVM first and hands this process its
    # gateway port.  A SparkConf made before the context starts cannot see the
    # submitted settings (spark.master among them), so the port is the sign instead.
    submitted = "PYSPARK_GATEWAY_PORT" in os.environ
    if not submitted:
        # Under spark-submit the executors' Python comes from its settings
        # (spark.pyspark.python), which may name a path only the cluster has.
        python_environment()
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        spark_conf.setMaster(master or "local[*]")
        for key, value in LOCAL_DEFAULTS.items():
            if not spark_conf.contains(key):
                spark_conf.set(key, value)
    for key, value in (conf or {}).items():
        spark_conf.set(key, str(value))
    spark_conf.setAppName(app_name)

    spark = SparkSession.builder.config(conf=spark_conf).getOrCreate()
    logger.info("Started Spark %s with master %s", spark.version, spark.sparkContext.master)
    return spark
