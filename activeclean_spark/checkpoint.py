"""Checkpoints: the driver's state after every iteration, and the records the cleaner returned since.

A checkpoint directory holds, for a run that was stopped at any moment:

* ``checkpoint-000012/``: the state after iteration 12 (theta, the cleaned
  records with their features, the refit candidate, the detector, the
  estimator's mean changes, the AdaGrad sums, the history).  Its
  ``manifest.json``, which lists the size and BLAKE2b digest of every
  file, is written last and appears whole, so a checkpoint cut off while
  being written has none and does not count.
* ``journal/``: the records the cleaner returned during the iteration that
  had not finished, one small Arrow file per record for a record cleaner
  and one per batch otherwise.  A resumed run takes them from here instead
  of calling the cleaner on them again.

The random draws of iteration t depend only on (seed, t, partition) and on
the state above, so a resumed run draws the same batches and ends with the
same model as a run that was never stopped.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import uuid
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .cleaners import CleanedBatch
from .output import dumps_record
from .storage import storage_for

__all__ = ["Checkpoints", "CheckpointError", "RunState", "describe"]

logger = logging.getLogger(__name__)

FORMAT = "activeclean_spark.checkpoint/1"
PREFIX = "checkpoint-"
JOURNAL = "journal"
MANIFEST = "manifest.json"
STATE = "state.json"
ARRAYS = "arrays.npz"
ROWS = "rows.arrow"
REMOVED = "removed.arrow"
# Columns a journal file adds to the input's columns.
STATUS_COLUMN = "__activeclean_status__"
OPERATION_COLUMN = "__activeclean_operation__"


_MOVE_AWAY = ("Move that checkpoint directory away to resume from the one before it, or set another checkpoint "
              "directory to start afresh")


class CheckpointError(ValueError):
    """A checkpoint is damaged or was written by another job; the message names it and what to do."""


@dataclass
class RunState:
    """State a run needs to go on after ``iteration``, as the module's description lists it."""

    iteration: int
    theta: np.ndarray
    store: dict  # CleanedStore.state()
    history: list = field(default_factory=list)
    refits: tuple = ()
    detector: dict | None = None  # classes, weights, threshold, certify, missed
    changes: tuple | None = None
    squares: np.ndarray | None = None
    finished: str | None = None  # why the run stopped, when it did before its budget was spent
    seconds: float = 0.0


def describe(value):
    """Return a JSON-ready description of a parameter, for comparing the jobs that share a checkpoint."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [describe(item) for item in value]
    if isinstance(value, dict):
        return {str(name): describe(item) for name, item in value.items()}
    if hasattr(value, "to_dict"):
        return describe(value.to_dict())
    if callable(value) and hasattr(value, "__qualname__"):
        return f"{value.__module__}:{value.__qualname__}"
    if hasattr(value, "__dict__"):
        public = {name: item for name, item in vars(value).items() if not name.startswith("_")}
        return {"class": type(value).__qualname__, **describe(public)}
    return repr(value)


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=20).hexdigest()


def _arrow_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _arrow_table(data: bytes) -> pa.Table:
    return pa.ipc.open_file(pa.BufferReader(data)).read_all()


def _differences(saved: dict, current: dict, prefix: str = "") -> list[str]:
    """Return 'name: saved X, now Y' for every entry that differs between two descriptions."""
    found = []
    for name in sorted(set(saved) | set(current)):
        before, now = saved.get(name), current.get(name)
        if isinstance(before, dict) and isinstance(now, dict):
            found += _differences(before, now, f"{prefix}{name}.")
        elif before != now:
            found.append(f"{prefix}{name}: {_short(before)} in the checkpoint, {_short(now)} now")
    return found


def _short(value) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


class Checkpoints:
    """The checkpoint directory of one job.

    Parameters
    ----------
    path : str
        Local directory, or a URI of any Hadoop filesystem Spark can write
        (``hdfs://``, ``s3a://``, ``file://``).
    keep : int, default=2
        Complete checkpoints kept; older ones are deleted after a new one
        is in place.
    spark : SparkSession, optional
        Session whose JVM reaches a Hadoop path; default the active one.
    """

    def __init__(self, path: str, *, keep: int = 2, spark=None):
        if not isinstance(path, str) or not path:
            raise ValueError(f"checkpoint directory must be a non-empty path, got {path!r}")
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise ValueError(f"checkpoint keep must be a positive integer, got {keep!r}")
        self.path = path
        self.keep = keep
        self.storage = storage_for(path, spark)

    def _join(self, *parts: str) -> str:
        return self.storage.join(self.path, *parts)

    def _numbered(self) -> list[int]:
        """Return the iterations of every checkpoint directory, complete or not, oldest first."""
        found = []
        for name in self.storage.list(self.path):
            if name.startswith(PREFIX) and name[len(PREFIX):].isdigit():
                found.append(int(name[len(PREFIX):]))
        return sorted(found)

    def _directory(self, iteration: int) -> str:
        return self._join(f"{PREFIX}{iteration:06d}")

    def iterations(self) -> list[int]:
        """Return the iterations of the complete checkpoints (those with a manifest), oldest first."""
        return [t for t in self._numbered() if MANIFEST in self.storage.list(self._directory(t))]

    def latest(self) -> int | None:
        """Return the iteration of the newest complete checkpoint, or None when there is none."""
        iterations = self.iterations()
        return iterations[-1] if iterations else None

    # -- reading ----------------------------------------------------------

    def _read_checked(self, iteration: int) -> dict:
        """Return the files of a checkpoint by name, after checking them against its manifest."""
        where = self._directory(iteration)
        names = self.storage.list(where)
        try:
            manifest = json.loads(self.storage.read(self.storage.join(where, MANIFEST)))
            files = manifest["files"]
        except (ValueError, KeyError, TypeError) as error:
            raise CheckpointError(
                f"checkpoint {where!r} has an unreadable {MANIFEST} ({error}); it is damaged.  {_MOVE_AWAY}"
            ) from None
        if manifest.get("format") != FORMAT:
            raise CheckpointError(
                f"checkpoint {where!r} has format {manifest.get('format')!r}; this version reads {FORMAT!r}"
            )
        contents = {}
        for name, expected in files.items():
            if name not in names:
                raise CheckpointError(f"checkpoint {where!r} lacks its file {name!r}; it is damaged.  {_MOVE_AWAY}")
            data = self.storage.read(self.storage.join(where, name))
            if len(data) != expected["bytes"] or _digest(data) != expected["blake2b"]:
                raise CheckpointError(
                    f"checkpoint file {self.storage.join(where, name)!r} has {len(data)} bytes and digest "
                    f"{_digest(data)[:12]}..., but its manifest says {expected['bytes']} bytes and "
                    f"{expected['blake2b'][:12]}...; it is damaged.  {_MOVE_AWAY}"
                )
            contents[name] = data
        return contents

    def load(self, fingerprint: dict) -> RunState | None:
        """Return the newest checkpoint's state, or None when the directory contains no checkpoint.

        Raises CheckpointError, and changes nothing, when the checkpoint is
        damaged or its job's parameters or input differ from ``fingerprint``.
        """
        iteration = self.latest()
        if iteration is None:
            return None
        contents = self._read_checked(iteration)
        state = json.loads(contents[STATE])
        current = json.loads(json.dumps(fingerprint, default=str))
        differences = _differences(state["fingerprint"], current)
        if differences:
            listed = "; ".join(differences[:5]) + ("; ..." if len(differences) > 5 else "")
            raise CheckpointError(
                f"checkpoint directory {self.path!r} belongs to another job ({listed}).  Run the job it was "
                "written for, or set another checkpoint directory to start this one afresh"
            )
        arrays = dict(np.load(io.BytesIO(contents[ARRAYS]), allow_pickle=False))
        store_arrays = {name[len("store."):]: values for name, values in arrays.items() if name.startswith("store.")}
        removed = _arrow_table(contents[REMOVED]).column(0).to_pylist()
        detector = state["detector"]
        if detector is not None:
            detector = {**detector, "weights": arrays["detector.weights"]}
        logger.info("Resuming from checkpoint %s after iteration %d", self._directory(iteration), iteration)
        return RunState(
            iteration=iteration,
            theta=arrays["theta"],
            store={"arrays": store_arrays, "classes": state["classes"], "rows": _arrow_table(contents[ROWS]),
                   "removed": removed},
            history=state["history"],
            refits=tuple(arrays[f"refit.{k}"] for k in range(state["refits"])),
            detector=detector,
            changes=(arrays["changes.dX"], arrays["changes.dy"]) if state["changes"] else None,
            squares=arrays.get("squares"),
            finished=state["finished"],
            seconds=state["seconds"],
        )

    # -- writing ----------------------------------------------------------

    def save(self, state: RunState, fingerprint: dict, key_type: pa.DataType) -> None:
        """Write the state after ``state.iteration`` as a new checkpoint, then drop older ones and the journal.

        NOTE: every checkpoint rewrites all cleaned records with their
        features, so its size and write time grow with the records cleaned.
        """
        arrays = {"theta": state.theta}
        arrays.update({f"store.{name}": values for name, values in state.store["arrays"].items()})
        arrays.update({f"refit.{k}": refit for k, refit in enumerate(state.refits)})
        detector = None
        if state.detector is not None:
            detector = {name: value for name, value in state.detector.items() if name != "weights"}
            arrays["detector.weights"] = state.detector["weights"]
        if state.changes is not None:
            arrays["changes.dX"], arrays["changes.dy"] = state.changes
        if state.squares is not None:
            arrays["squares"] = state.squares
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)

        described = {
            "format": FORMAT, "iteration": state.iteration, "fingerprint": fingerprint,
            "history": state.history, "classes": state.store["classes"], "refits": len(state.refits),
            "detector": detector, "changes": state.changes is not None, "finished": state.finished,
            "seconds": state.seconds,
        }
        removed = pa.table({"key": pa.array(state.store["removed"], type=key_type)})
        files = {
            STATE: dumps_record(described).encode(),
            ARRAYS: buffer.getvalue(),
            ROWS: _arrow_bytes(state.store["rows"]),
            REMOVED: _arrow_bytes(removed),
        }
        # The manifest is written last, in one piece: a checkpoint without one
        # was cut off while being written and does not count.  Writing in
        # place (no directory rename) keeps this true on object stores too.
        directory = self._directory(state.iteration)
        if self.storage.exists(directory):
            self.storage.delete(directory)  # a resumed run saving an iteration again
        self.storage.makedirs(directory)
        for file, data in files.items():
            self.storage.write(self.storage.join(directory, file), data)
        manifest = {"format": FORMAT, "iteration": state.iteration,
                    "files": {file: {"bytes": len(data), "blake2b": _digest(data)} for file, data in files.items()}}
        self._publish(self.storage.join(directory, MANIFEST), json.dumps(manifest, indent=1).encode())
        self._prune(state.iteration)

    def _publish(self, path: str, data: bytes) -> None:
        """Write a file so that it appears whole or not at all."""
        temporary = f"{path}.{uuid.uuid4().hex[:12]}.tmp"
        self.storage.write(temporary, data)
        self.storage.rename(temporary, path)

    def _prune(self, iteration: int) -> None:
        """Delete checkpoints beyond ``keep``, unfinished ones and journal files up to ``iteration``."""
        complete = self.iterations()
        for old in self._numbered():
            if old in complete[-self.keep:] or old > iteration:
                continue
            self.storage.delete(self._directory(old))
        for name in self.storage.list(self._join(JOURNAL)):
            finished = _journal_iteration(name) is not None and _journal_iteration(name) <= iteration
            if finished or name.endswith(".tmp"):  # a temporary file is one a killed run left
                self.storage.delete(self._join(JOURNAL, name))

    def journal(self, iteration: int, schema: pa.Schema, key: str) -> "Journal":
        """Return the journal of the records the cleaner returns during ``iteration``."""
        return Journal(self, iteration, schema, key)


def _journal_iteration(name: str) -> int | None:
    parts = name.split("-")
    if len(parts) >= 2 and parts[0] == "iteration" and parts[1].isdigit() and name.endswith(".arrow"):
        return int(parts[1])
    return None


class Journal:
    """Records the cleaner returned during one iteration, each written to its own file as soon as it is known."""

    def __init__(self, checkpoints: Checkpoints, iteration: int, schema: pa.Schema, key: str):
        self.checkpoints = checkpoints
        self.iteration = iteration
        self.key = key
        self.values = pa.schema([pa.field(f.name, f.type, nullable=True) for f in schema])
        self.schema = self.values.append(pa.field(STATUS_COLUMN, pa.string())).append(
            pa.field(OPERATION_COLUMN, pa.string()))
        self._run = uuid.uuid4().hex[:12]
        self._count = 0

    def _write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        storage = self.checkpoints.storage
        directory = self.checkpoints._join(JOURNAL)
        storage.makedirs(directory)
        self._count += 1
        name = f"iteration-{self.iteration:06d}-{self._run}-{self._count:06d}.arrow"
        self.checkpoints._publish(storage.join(directory, name), _arrow_bytes(table))

    def _rows(self, rows: pd.DataFrame, removed: list, operations: dict) -> pa.Table:
        """Return the journal rows of cleaned and removed records; rows whose values do not fit are left out."""
        parts = []
        if len(rows) and all(name in rows.columns for name in self.values.names):
            values = rows[self.values.names]
            try:
                parts.append(pa.Table.from_pandas(values, schema=self.values, preserve_index=False))
            except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
                # The cleaner's validation reports the bad value; the others are kept.
                for position in range(len(values)):
                    try:
                        parts.append(pa.Table.from_pandas(values.iloc[[position]], schema=self.values,
                                                          preserve_index=False))
                    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
                        continue
        journaled = pa.concat_tables(parts) if parts else self.values.empty_table()
        status = ["cleaned"] * journaled.num_rows
        if removed:
            try:
                keys = pa.array(list(removed), type=self.values.field(self.key).type)
            except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
                keys = None
            if keys is not None:
                removed_rows = pa.table([keys if n == self.key else pa.nulls(len(keys), self.values.field(n).type)
                                 for n in self.values.names], schema=self.values)
                journaled = pa.concat_tables([journaled, removed_rows])
                status += ["removed"] * len(keys)
        reported = [operations.get(k) for k in journaled.column(self.key).to_pylist()]
        return pa.Table.from_arrays(
            [*journaled.columns, pa.array(status, pa.string()),
             pa.array([None if op is None else str(op) for op in reported], pa.string())],
            schema=self.schema,
        )

    def add(self, cleaned: CleanedBatch | None) -> None:
        """Write what a cleaner returned for (part of) the batch."""
        if cleaned is not None:
            self._write(self._rows(cleaned.table, list(cleaned.removed), dict(cleaned.operations)))

    def record(self, key, result: dict | None, operation=None) -> None:
        """Write one record a record cleaner returned (None: removed)."""
        if result is None:
            self.add(CleanedBatch(pd.DataFrame(columns=self.values.names), [key], {key: operation}))
        else:
            self.add(CleanedBatch(pd.DataFrame([result]), [], {key: operation}))

    def returned(self) -> CleanedBatch | None:
        """Return the records an earlier, stopped run had from the cleaner in this iteration, or None."""
        storage = self.checkpoints.storage
        directory = self.checkpoints._join(JOURNAL)
        tables = []
        for name in storage.list(directory):
            if _journal_iteration(name) != self.iteration:
                continue
            try:
                tables.append(_arrow_table(storage.read(storage.join(directory, name))).cast(self.schema))
            except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as error:
                raise CheckpointError(
                    f"journal file {storage.join(directory, name)!r} is unreadable ({error}); move it away to "
                    "clean its records again"
                ) from None
        if not tables:
            return None
        table = pa.concat_tables(tables)
        # A record journaled twice (a partial result, then again) counts once, as last written.
        last = {k: row for row, k in enumerate(table.column(self.key).to_pylist())}
        table = table.take(pa.array(sorted(last.values()), pa.int64()))
        removed = pc.equal(table.column(STATUS_COLUMN), "removed")
        operations = {k: op for k, op in zip(table.column(self.key).to_pylist(),
                                             table.column(OPERATION_COLUMN).to_pylist()) if op is not None}
        rows = table.filter(pc.invert(removed)).select(self.values.names).to_pandas()
        logger.info("Reusing %d records the cleaner returned for iteration %d before the run stopped",
                    table.num_rows, self.iteration)
        return CleanedBatch(rows, table.filter(removed).column(self.key).to_pylist(), operations)
