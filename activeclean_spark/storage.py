"""Whole-file storage on a local disk or on any filesystem Hadoop reaches (hdfs://, s3a://, abfss://, file://).

A path without a scheme is local and goes through ``os``.  A URI goes
through Hadoop's FileSystem API in the driver's JVM, so it reaches every
filesystem the Spark session is configured for.  Files are written
whole: first to a local temporary file, then copied, so no large buffer
crosses the Python-to-JVM bridge.
"""

from __future__ import annotations

import os
import shutil
import tempfile

__all__ = ["LocalStorage", "HadoopStorage", "storage_for"]


class LocalStorage:
    """Files on the driver's local disk."""

    def join(self, *parts: str) -> str:
        return os.path.join(*parts)

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def list(self, path: str) -> list[str]:
        """Return the names in a directory, or [] when it does not exist."""
        return sorted(os.listdir(path)) if os.path.isdir(path) else []

    def makedirs(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)

    def read(self, path: str) -> bytes:
        with open(path, "rb") as handle:
            return handle.read()

    def write(self, path: str, data: bytes) -> None:
        """Write and sync a file, so that it survives a crash of the machine once this returns."""
        with open(path, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())

    def rename(self, source: str, target: str) -> None:
        """Rename a file or directory; atomic within one filesystem.  The target must not exist."""
        os.rename(source, target)
        _sync_directory(os.path.dirname(os.path.abspath(target)))

    def delete(self, path: str) -> None:
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.exists(path):
            os.remove(path)


def _sync_directory(path: str) -> None:
    """Sync a directory, so that a rename in it is on disk."""
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass  # some filesystems do not sync directories
    finally:
        os.close(descriptor)


class HadoopStorage:
    """Files on a Hadoop filesystem, through the JVM of a classic (not Spark Connect) session.

    A file rename is atomic on HDFS and on the local filesystem.  On object
    stores such as S3 a rename is a copy, but a file written whole still
    appears whole.
    """

    def __init__(self, spark):
        jvm = getattr(spark, "_jvm", None)
        if jvm is None:
            raise ValueError(
                "a Hadoop filesystem path needs a classic Spark session with a JVM on the driver; Spark Connect "
                "sessions have none, so use a local path there"
            )
        self._jvm = jvm
        self._conf = spark._jsc.hadoopConfiguration()

    def _path(self, path: str):
        return self._jvm.org.apache.hadoop.fs.Path(path)

    def _filesystem(self, path: str):
        return self._path(path).getFileSystem(self._conf)

    def join(self, *parts: str) -> str:
        return "/".join([parts[0].rstrip("/"), *[part.strip("/") for part in parts[1:]]])

    def exists(self, path: str) -> bool:
        return bool(self._filesystem(path).exists(self._path(path)))

    def list(self, path: str) -> list[str]:
        filesystem = self._filesystem(path)
        if not filesystem.exists(self._path(path)):
            return []
        return sorted(status.getPath().getName() for status in filesystem.listStatus(self._path(path)))

    def makedirs(self, path: str) -> None:
        self._filesystem(path).mkdirs(self._path(path))

    def read(self, path: str) -> bytes:
        with tempfile.TemporaryDirectory() as scratch:
            local = os.path.join(scratch, "file")
            # The raw local filesystem writes no .crc file beside the copy.
            self._filesystem(path).copyToLocalFile(False, self._path(path), self._path(local), True)
            with open(local, "rb") as handle:
                return handle.read()

    def write(self, path: str, data: bytes) -> None:
        with tempfile.TemporaryDirectory() as scratch:
            local = os.path.join(scratch, "file")
            with open(local, "wb") as handle:
                handle.write(data)
            self._filesystem(path).copyFromLocalFile(False, True, self._path(local), self._path(path))

    def rename(self, source: str, target: str) -> None:
        if not self._filesystem(source).rename(self._path(source), self._path(target)):
            raise OSError(f"could not rename {source!r} to {target!r}")

    def delete(self, path: str) -> None:
        self._filesystem(path).delete(self._path(path), True)


def storage_for(path: str, spark=None):
    """Return the storage of ``path``: local without a URI scheme, else Hadoop through ``spark``'s JVM."""
    if "://" not in path:
        return LocalStorage()
    if spark is None:
        from pyspark.sql import SparkSession

        spark = SparkSession.getActiveSession()
        if spark is None:
            raise ValueError(f"path {path!r} is a Hadoop filesystem URI, which needs an active Spark session")
    return HadoopStorage(spark)
