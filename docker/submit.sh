#!/usr/bin/env bash
# Submit the main job to the docker compose cluster, in client mode, from
# the submit image (docker/Dockerfile, target submit).
#
# Usage: submit.sh CONFIG [--set section.option=value ...]
# Relative paths in CONFIG start at /opt/activeclean, the working directory.
set -euo pipefail

if [[ $# -eq 0 ]]; then
    echo "error: missing CONFIG, a job configuration such as conf/demo.toml" >&2
    echo "usage: submit.sh CONFIG [--set section.option=value ...]" >&2
    exit 2
fi

# Executors connect back to the driver.  A container started with
# `docker compose run` has no DNS entry under the service name, so the driver
# advertises its container's IP address, which every service on the compose
# network reaches.
driver_host="$(hostname -i | cut -d' ' -f1)"

exec "${SPARK_HOME}/bin/spark-submit" \
    --properties-file conf/cluster/spark-defaults.conf \
    --conf "spark.driver.host=${driver_host}" \
    --py-files dist/activeclean_spark.zip \
    jobs/activeclean_job.py "$@"
