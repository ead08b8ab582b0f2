"""spark-submit entry point: the same job as ``activeclean run``.

Usage::

    spark-submit [spark options] jobs/activeclean_job.py CONFIG [--set section.option=value ...]

The master and resources come from spark-submit; ``spark.master`` in the
configuration applies only when the job starts its own session.
"""

import sys

from activeclean_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
