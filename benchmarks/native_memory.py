"""Report where the JVM's memory goes while the engine caches a large table.

Usage: python benchmarks/native_memory.py [--rows N] [--features D]

Starts the benchmark's Spark session (local[2]) with an 8 GB heap, because
6 GB has run out at 10^7 rows, and with Java's Native
Memory Tracking on.  It prepares the engine on a generated table and
prints the JVM's tracking summary (read with jcmd) at the largest anonymous
resident size seen, sampled every 2 s.  Needs jcmd from the JDK.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import iteration  # noqa: E402  (the benchmark module beside this file)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--features", type=int, default=20)
    args = parser.parse_args(argv)

    spark = iteration._spark({"spark.driver.memory": "8g",
                              "spark.driver.extraJavaOptions": "-XX:NativeMemoryTracking=summary"})
    jvm_pid = iteration._spark_processes()[0][0]
    peak = {"kib": 0, "summary": ""}
    stop = threading.Event()

    def sample():
        while not stop.wait(2):
            anonymous = iteration._status_kib(jvm_pid, "RssAnon")
            if anonymous > peak["kib"]:
                summary = subprocess.run(["jcmd", str(jvm_pid), "VM.native_memory", "summary"],
                                         capture_output=True, text=True).stdout
                peak.update(kib=anonymous, summary=summary)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    table = iteration._table(args.rows, args.features)
    prepared = iteration._engine(table, 1).prepare(table.dataframe(spark, partitions=iteration.PARTITIONS))
    stop.set()
    sampler.join()
    prepared.release()
    spark.stop()
    print(f"largest anonymous resident size of the JVM: {peak['kib'] / 2**20:.1f} GiB")
    print(peak["summary"])


if __name__ == "__main__":
    main()
