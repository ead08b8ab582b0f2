"""An interactive cleaning session for the PySpark shell and notebooks.

The session runs the same loop as :meth:`ActiveClean.fit`, but the analyst
is the cleaner: :meth:`CleaningSession.suggest` returns the next batch, the
analyst hands records back (:meth:`~CleaningSession.clean`,
:meth:`~CleaningSession.remove`, :meth:`~CleaningSession.keep`,
:meth:`~CleaningSession.apply`), and the model takes its step once every
record of the batch is back.  Between batches an operation can be applied to
every uncleaned record that the learned detector puts in its error class.

A saved session (:meth:`~CleaningSession.save`) resumes elsewhere with
:meth:`CleaningSession.load`.  Its draws depend on the seed, the iteration
and the cleaned records only, so the resumed session suggests the same
batches and ends with the same model as one that never stopped.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa

from .checkpoint import Checkpoints, CheckpointError
from .cleaners import CleanedBatch, Cleaner, CleanerError, validate_cleaned
from .detector import CLEAN, LearnedDetector
from .engine import ActiveClean, _Drawn, _Run
from .features import FeatureSpec, Featurizer
from .losses import Loss
from .model import ActiveCleanModel
from .operations import Operation, changed_mask, operation_from_dict
from .output import dumps_record
from .progress import SparkProgress, progress_wanted
from .sampler import estimated_norms
from .storage import storage_for

__all__ = ["CleaningSession", "ClassPreview", "SessionStatus", "SCORE_COLUMN", "PROBABILITY_COLUMN",
           "CLASS_COLUMN", "SAMPLE_COLUMN"]

logger = logging.getLogger(__name__)

# Columns that suggest() adds to the batch; they are dropped from the rows handed back.
SCORE_COLUMN = "_score"
PROBABILITY_COLUMN = "_draw_probability"
CLASS_COLUMN = "_predicted_class"
SAMPLE_COLUMN = "_sample"
ADDED_COLUMNS = (SCORE_COLUMN, PROBABILITY_COLUMN, CLASS_COLUMN, SAMPLE_COLUMN)

# Marks a parameter the caller left out, where None has a meaning of its own.
DEFAULT = object()

FORMAT = 1
SESSION_FILE = "session.json"
ENGINE_FILE = "engine.pickle"
AUDIT_FILE = "audit.jsonl"
CHECKPOINT_DIRECTORY = "state"


class _HandedBack(Cleaner):
    """The engine's cleaner inside a session: it returns what the analyst handed back."""

    def __init__(self):
        self.cleaned: CleanedBatch | None = None

    def clean(self, batch, key):
        if self.cleaned is None:
            raise CleanerError("the session called the engine's update without the records handed back")
        return self.cleaned


class _Applied:
    """The operations that changed one record: its error class and its entry in the audit trail."""

    def __init__(self, operations: list):
        self.operations = operations

    @property
    def name(self) -> str:
        return "+".join(operation.name for operation in self.operations)

    def describe(self):
        described = [operation.describe() for operation in self.operations]
        return described[0] if len(described) == 1 else described

    def __str__(self) -> str:
        return self.name


def _run_operations(operations: list, frame: pd.DataFrame, key: str):
    """Apply operations in order to a frame of dirty records.

    Returns ``(cleaned rows, removed keys, key -> _Applied)``.  A record's
    entry lists the operations that changed a value of it or removed it.  A
    record that no operation changed has no entry, so its error class is
    ``"clean"``.
    """
    current = frame.reset_index(drop=True)
    removed = np.zeros(len(current), dtype=bool)
    applied = [[] for _ in range(len(current))]
    for operation in operations:
        if operation.removes:
            removed[:] = True
            for entry in applied:
                entry.append(operation)
            continue
        after = operation.apply(current)
        changed = np.zeros(len(current), dtype=bool)
        for column in operation.columns:
            changed |= changed_mask(current[column], after[column])
        for position in np.flatnonzero(changed):
            applied[position].append(operation)
        current = after
    keys = current[key].tolist()
    entries = {k: _Applied(ops) for k, ops in zip(keys, applied) if ops}
    return current[~removed].reset_index(drop=True), [k for k, gone in zip(keys, removed) if gone], entries


def _positive_budget(budget) -> int:
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 1:
        raise ValueError(f"budget must be a positive integer, got {budget!r}")
    return int(budget)


def _operation_list(operations) -> list:
    return list(operations) if isinstance(operations, (list, tuple)) else [operations]


@dataclass
class SessionStatus:
    """A snapshot of a session: progress, the current metric and the last step."""

    iteration: int
    records_cleaned: int
    records: int
    budget: int
    batch_size: int
    batch_pending: int  # records of the suggested batch not yet handed back
    metric: str | None
    metric_value: float | None
    dirty_metric_value: float | None
    step_size: float | None
    step_norm: float | None
    model_error: float | None
    finished: str | None

    def as_dict(self) -> dict:
        return dict(vars(self))

    def __str__(self) -> str:
        lines = [f"iteration {self.iteration}: {self.records_cleaned} of {self.records} records cleaned "
                 f"(budget {self.budget}, batch {self.batch_size})"]
        if self.batch_pending:
            lines.append(f"{self.batch_pending} records of the current batch still to hand back")
        if self.metric is not None:
            lines.append(f"held-out {self.metric} {_number(self.metric_value)} "
                         f"(dirty model {_number(self.dirty_metric_value)})")
        if self.step_norm is not None:
            lines.append(f"last step: size {_number(self.step_size)}, norm {_number(self.step_norm)}")
        if self.model_error is not None:
            lines.append(f"model error against the fully clean model {_number(self.model_error)}")
        if self.finished:
            lines.append(f"finished: {self.finished}")
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        import html

        rows = "".join(f"<tr><th style='text-align:left'>{html.escape(name)}</th><td>{html.escape(_number(value))}</td></tr>"
                       for name, value in self.as_dict().items())
        return f"<table>{rows}</table>"


@dataclass
class ClassPreview:
    """The records of an error class and the cells that applying operations to them would change."""

    operation: object
    error_class: str
    records: int  # uncleaned records the detector assigns to the class
    changed_records: int
    changes: pd.DataFrame  # one row per changed cell: key, column, before, after
    unusable: int = 0  # records whose label stays unusable, which stay uncleaned
    rows: pa.Table = field(repr=False, default=None)
    locations: tuple = field(repr=False, default=())
    state: tuple = field(repr=False, default=())  # (iteration, records cleaned) when the preview was made

    def __str__(self) -> str:
        per_column = self.changes.groupby("column").size().to_dict() if len(self.changes) else {}
        columns = ", ".join(f"{name}: {count}" for name, count in per_column.items()) or "none"
        text = (f"{self.operation!s} on error class {self.error_class!r}: {self.records} uncleaned records in the "
                f"class, {self.changed_records} would change (cells per column: {columns})")
        if self.unusable:
            text += (f"; {self.unusable} would keep an unusable label and stay uncleaned")
        return text

    __repr__ = __str__

    def _repr_html_(self) -> str:
        import html

        return f"<p>{html.escape(str(self))}</p>" + self.changes.head(50).to_html(escape=True, index=False)


def _number(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}" if np.isfinite(value) else "n/a"
    return str(value)


class CleaningSession:
    """Clean a Spark DataFrame interactively while the model learns from every batch.

    Parameters
    ----------
    df : pyspark.sql.DataFrame
        Dirty training table.
    key : str
        Column with a unique, stable id per record.
    features : FeatureSpec or Featurizer
        What to featurize, as for :class:`ActiveClean`.
    loss : Loss
        Convex loss, for example ``LogisticLoss(reg=1e-3)``.
    test : pyspark.sql.DataFrame, optional
        Clean held-out records; the session reports their metric after every step.
    reference : pyspark.sql.DataFrame, optional
        Fully clean version of ``df``, when known (for evaluation).
    budget : int, optional
        Records to clean in all, by default every record.
    batch_size : int, default=20
        Records per suggested batch.
    detector : LearnedDetector or None, default=LearnedDetector()
        Learns the error classes that the analyst's operations name; pass
        None to go without.
    progress : bool, optional
        Show the progress of long Spark steps; by default on a terminal and in notebooks.
    **options
        Any other parameter of :class:`ActiveClean` (``seed``, ``step``,
        ``floor``, ``rule``, ``update``, ``num_partitions``...).

    Creating the session caches the table and trains the dirty model.
    """

    def __init__(self, df, *, key: str, features: FeatureSpec | Featurizer, loss: Loss, test=None, reference=None,
                 budget: int | None = None, batch_size: int = 20, detector: LearnedDetector | None = DEFAULT,
                 progress: bool | None = None, **options):
        if detector is DEFAULT:
            detector = LearnedDetector()
        for column in ADDED_COLUMNS:
            if column in df.columns:
                raise ValueError(f"input table has a column {column!r}, which the session adds to suggested "
                                 "batches; rename it")
        engine = ActiveClean(key=key, features=features, loss=loss, cleaner=_HandedBack(), budget=budget or 1,
                             batch_size=batch_size, detector=detector, **options)
        self._open(engine, df, test=test, reference=reference, budget=budget, progress=progress, checkpoint=None)

    # -- set-up -------------------------------------------------------------

    def _open(self, engine: ActiveClean, df, *, test, reference, budget, progress, checkpoint) -> None:
        self.engine = engine
        self.df = df
        self.progress = progress_wanted(progress)
        self._spark = df.sparkSession
        with self._progress("caching the table, training the dirty model"):
            self.prepared = engine.prepare(df, test=test, reference=reference)
        if budget is None:
            engine.budget = self.prepared.n_total
        # The partitions are part of the state, so a loaded session must cut the table the same way.
        engine.num_partitions = self.prepared.blocks.num_partitions
        try:
            with self._progress("restoring" if checkpoint is not None else "starting"):
                self._run: _Run = engine._begin(self.prepared, checkpoint=checkpoint)
        except BaseException:
            self.prepared.release()
            raise
        # The session keeps its own checkpoints only when saved.
        self._run.checkpoints = None
        self._run.loop.journal = None
        self._run.loop.audit = self._run.loop.audit if self._run.loop.audit is not None else []
        self._drawn: _Drawn | None = None
        self._frame: pd.DataFrame | None = None  # the drawn batch as pandas, with the added columns
        self._rows: dict = {}  # key -> cleaned row (dict) handed back for the current batch
        self._removed: list = []
        self._operations: dict = {}  # key -> the operation the analyst applied
        self._fitted: dict = {}  # operation name -> fitted operation, so every batch uses one statistic
        self.operations: dict = {}  # operation name -> its description, for the report

    def _progress(self, description: str) -> SparkProgress:
        return SparkProgress(self._spark.sparkContext, description, enabled=self.progress)

    @property
    def key(self) -> str:
        return self.engine.key

    @property
    def schema(self) -> pa.Schema:
        return self.prepared.schema

    @property
    def audit(self) -> list[dict]:
        """The audit records of every record cleaned so far, oldest first."""
        return self._run.loop.audit

    @property
    def history(self) -> list[dict]:
        """One record per finished iteration, as :attr:`ActiveCleanResult.history`."""
        return self._run.history

    @property
    def model(self) -> ActiveCleanModel:
        """The current model, with its held-out metrics when the session has a test table."""
        history = self._run.history
        test = history[-1].get("test", {}) if history else self.prepared.dirty_model.metrics.get("test", {})
        return ActiveCleanModel(self._run.theta.copy(), self.prepared.featurizer, self.engine.loss, {"test": test})

    @property
    def dirty_model(self) -> ActiveCleanModel:
        return self.prepared.dirty_model

    # -- the batch ----------------------------------------------------------

    def _remaining(self) -> int:
        return self.engine.budget - self._run.loop.store.size

    def _ensure_batch(self) -> bool:
        """Draw the next batch unless one is pending; return False when nothing is left to clean."""
        if self._drawn is not None:
            return True
        if self._run.finished or self._remaining() <= 0:
            return False
        with self._progress(f"scoring for batch {self._run.t + 1}"):
            drawn = self.engine._draw(self._run.t + 1, self._run.theta, self._run.loop)
        if drawn is None:
            self._run.finished = "no dirty records left"
            return False
        self._drawn = drawn
        self._frame = self._described(drawn)
        return True

    def _described(self, drawn: _Drawn) -> pd.DataFrame:
        """Return the batch as pandas, with each record's score, draw probability, predicted class and sample."""
        frame = drawn.batch.to_pandas()
        X, y = self.prepared.featurizer.transform(drawn.batch)
        model = self._run.loop.detector_model
        probabilities = model.probabilities(X) if model is not None else None
        scores = estimated_norms(self.engine.loss, X, y, self._run.theta, self._run.loop.changes, probabilities)
        frame[SCORE_COLUMN] = scores
        frame[PROBABILITY_COLUMN] = [d.probability for d in drawn.distinct]
        if probabilities is not None:
            frame[CLASS_COLUMN] = np.asarray(model.classes, dtype=object)[probabilities.argmax(axis=1)]
        else:
            frame[CLASS_COLUMN] = None
        frame[SAMPLE_COLUMN] = np.where(drawn.in_batch, "batch", "audit")
        return frame

    def suggest(self, *, as_spark: bool = False):
        """Return the records of the current batch not yet handed back, drawing a new batch when none is open.

        The batch has the table's columns plus ``_score`` (the norm of the
        record's estimated clean gradient), ``_draw_probability``,
        ``_predicted_class`` (the detector's error class, None before it is
        trained) and ``_sample`` (``"batch"``, or ``"audit"`` for a record
        the detector trusts, drawn to check it).  The frame is pandas, or a
        Spark DataFrame with ``as_spark=True``.  It is empty when the budget
        is spent or no dirty record is left.
        """
        if not self._ensure_batch():
            frame = pd.DataFrame(columns=[*self.schema.names, *ADDED_COLUMNS])
        else:
            done = set(self._rows) | set(self._removed)
            frame = self._frame[~self._frame[self.key].isin(done)].reset_index(drop=True)
        if as_spark:
            from pyspark.sql.types import DoubleType, StringType, StructField, StructType

            added = [StructField(SCORE_COLUMN, DoubleType()), StructField(PROBABILITY_COLUMN, DoubleType()),
                     StructField(CLASS_COLUMN, StringType()), StructField(SAMPLE_COLUMN, StringType())]
            schema = StructType([*self.df.schema.fields, *added])
            return self._spark.createDataFrame(frame[schema.fieldNames()], schema=schema)
        return frame.copy()

    def _open_keys(self, ids, action: str) -> list:
        """Return ``ids`` as a list after checking each is in the open batch and not yet handed back."""
        if not self._ensure_batch():
            raise ValueError(f"cannot {action}: no batch is open (the budget is spent or no dirty record is left)")
        if isinstance(ids, (str, bytes)) or not hasattr(ids, "__iter__"):
            ids = [ids]
        ids = [k.item() if isinstance(k, np.generic) else k for k in ids]
        batch_keys = self._frame[self.key].tolist()
        known = set(batch_keys)
        done = set(self._rows) | set(self._removed)
        for k in ids:
            if k not in known:
                same_text = [b for b in batch_keys if str(b) == str(k)]
                if same_text:
                    raise ValueError(f"cannot {action} {self.key}={k!r}: the key is a {type(k).__name__}, but the "
                                     f"column {self.key!r} holds {type(same_text[0]).__name__} values; pass "
                                     f"{same_text[0]!r}")
                raise ValueError(f"cannot {action} {self.key}={k!r}: it is not in the current batch; the batch has "
                                 f"{self.key} {batch_keys[:10]}{' ...' if len(batch_keys) > 10 else ''}")
            if k in done:
                raise ValueError(f"cannot {action} {self.key}={k!r}: it was already handed back for this batch")
        if len(set(ids)) != len(ids):
            duplicate = next(k for k in ids if ids.count(k) > 1)
            raise ValueError(f"cannot {action} {self.key}={duplicate!r} twice in one call")
        return ids

    def _table(self, rows) -> pd.DataFrame:
        """Return handed-back rows (pandas, Spark, a dict or a list of dicts) as pandas with the table's columns."""
        if hasattr(rows, "toPandas"):
            rows = rows.toPandas()
        elif isinstance(rows, dict):
            rows = pd.DataFrame([rows])
        elif isinstance(rows, list):
            rows = pd.DataFrame(rows)
        if not isinstance(rows, pd.DataFrame):
            raise TypeError(f"hand back rows as a pandas or Spark DataFrame, a dict or a list of dicts, not "
                            f"{type(rows).__name__}")
        if self.key not in rows.columns:
            raise ValueError(f"the rows handed back have no key column {self.key!r}; their columns are "
                             f"{list(rows.columns)}")
        return rows.drop(columns=[c for c in ADDED_COLUMNS if c in rows.columns]).reset_index(drop=True)

    def _check(self, rows: pd.DataFrame, removed: list, operations: dict | None = None) -> None:
        """Validate handed-back records against their dirty version; raise ValueError naming the problem."""
        keys = [*rows[self.key].tolist(), *removed]
        sent = self._frame[self._frame[self.key].isin(keys)][list(self.schema.names)].reset_index(drop=True)
        cleaned = CleanedBatch(rows, removed, operations or {})
        try:
            table = validate_cleaned(sent, cleaned, self.key, self.schema)
            if table.num_rows:
                self.engine._features_of(table, table, [], self.prepared.featurizer)
        except CleanerError as error:
            raise ValueError(str(error).replace("cleaner returned", "handed back").replace(
                "cleaner ", "the rows handed back ")) from None

    def clean(self, rows):
        """Hand back cleaned versions of records of the current batch.

        ``rows`` has the table's columns (the added ``_`` columns are
        ignored) and one row per record, identified by the key.  A record's
        error class is the set of columns that changed.  Once every record
        of the batch is back, the model takes its step.  Returns :meth:`status`.
        """
        rows = self._table(rows)
        self._open_keys(rows[self.key].tolist(), "clean")
        self._check(rows, [])
        for row in rows.to_dict(orient="records"):
            self._rows[row[self.key]] = row
        return self._maybe_update()

    def remove(self, ids):
        """Remove records of the current batch from the training data; their error class is ``"removed"``."""
        ids = self._open_keys(ids, "remove")
        self._removed.extend(ids)
        return self._maybe_update()

    def keep(self, ids=None):
        """Hand back records of the current batch unchanged (all not yet handed back by default): they are clean."""
        if ids is None:
            self._ensure_batch()
            ids = self.suggest()[self.key].tolist()
            if not ids:
                return self.status()
        ids = self._open_keys(ids, "keep")
        dirty = self._frame[self._frame[self.key].isin(ids)][list(self.schema.names)].reset_index(drop=True)
        self._check(dirty, [])
        for row in dirty.to_dict(orient="records"):
            self._rows[row[self.key]] = row
        return self._maybe_update()

    def reopen(self, ids=None):
        """Take back records handed back for the current batch (all by default), to hand them back another way."""
        if ids is None:
            ids = [*self._rows, *self._removed]
        if isinstance(ids, (str, bytes)) or not hasattr(ids, "__iter__"):
            ids = [ids]
        for k in ids:
            k = k.item() if isinstance(k, np.generic) else k
            if k in self._rows:
                del self._rows[k]
            elif k in self._removed:
                self._removed.remove(k)
            else:
                raise ValueError(f"cannot reopen {self.key}={k!r}: it was not handed back for the current batch")
            self._operations.pop(k, None)
        return self.status()

    def _fitted_operation(self, operation):
        """Return the operation with its statistic computed over the whole table (once per name)."""
        if not isinstance(operation, Operation):
            raise TypeError(f"expected an operation from activeclean_spark.operations, got {type(operation).__name__}")
        if operation.name == CLEAN:
            raise ValueError(f"an operation cannot be named {CLEAN!r}, the class of unchanged records")
        if operation.needs_fit:
            earlier = self._fitted.get(operation.name)
            if earlier is not None and earlier.describe().get("operation") == operation.describe().get("operation"):
                return earlier
            with self._progress(f"fitting {operation.name}"):
                operation.fit_spark(self.df)
        self._fitted[operation.name] = operation
        return operation

    def _record_operations(self, operations: list) -> None:
        """List applied operations with their descriptions, for the report and the saved session."""
        for operation in operations:
            self.operations[operation.name] = operation.describe()

    def apply(self, operations, ids=None):
        """Apply cleaning operations, in order, to records of the current batch and hand them back.

        ``operations`` is one operation from :mod:`activeclean_spark.operations`
        or a list of them; ``ids`` default to every record of the batch not
        yet handed back.  A record's error class names the operations that
        changed it, joined by ``+`` (``"clean"`` when none did), and the
        learned detector learns these classes.  Returns :meth:`status`.
        """
        operations = [self._fitted_operation(operation) for operation in _operation_list(operations)]
        if ids is None:
            ids = self.suggest()[self.key].tolist()
            if not ids:
                raise ValueError("cannot apply: no batch is open (the budget is spent or no dirty record is left)")
        ids = self._open_keys(ids, "apply")
        dirty = self._frame[self._frame[self.key].isin(ids)][list(self.schema.names)].reset_index(drop=True)
        cleaned, removed, applied = _run_operations(operations, dirty, self.key)
        self._check(cleaned, removed)
        for row in cleaned.to_dict(orient="records"):
            self._rows[row[self.key]] = row
        self._removed.extend(removed)
        self._operations.update(applied)
        self._record_operations(operations)
        return self._maybe_update()

    def _maybe_update(self):
        done = len(self._rows) + len(self._removed)
        if self._frame is not None and done == len(self._frame):
            self.update()
        return self.status()

    def update(self):
        """Take the model's step on the current batch; records not handed back count as unchanged (clean)."""
        if self._drawn is None:
            raise ValueError("no batch is open: call suggest() first")
        done = set(self._rows) | set(self._removed)
        rest = self._frame[~self._frame[self.key].isin(done)][list(self.schema.names)]
        if len(rest):
            logger.info("Keeping %d records of batch %d that were not handed back as unchanged", len(rest),
                        self._run.t + 1)
        if len(rest):
            self._check(rest.reset_index(drop=True), [])
        rows = [*self._rows.values(), *rest.to_dict(orient="records")]
        table = pd.DataFrame(rows, columns=list(self.schema.names))
        cleaner = self.engine.cleaner
        cleaner.cleaned = CleanedBatch(table, list(self._removed), dict(self._operations))
        run = self._run
        try:
            with self._progress(f"model update {run.t + 1}"):
                theta, record = self.engine._update(run.t + 1, run.theta, run.loop, self._drawn)
                self.engine._advance(run, theta, record)
        finally:
            cleaner.cleaned = None
        self._drawn, self._frame = None, None
        self._rows, self._removed, self._operations = {}, [], {}
        if run.finished is None and self._remaining() <= 0:
            run.finished = "budget spent"
        return self.status()

    # -- apply to a class ---------------------------------------------------

    def preview(self, operations, *, error_class: str | None = None) -> ClassPreview:
        """Show what :meth:`apply_to_class` would change: the records in the class and every changed cell.

        The class defaults to the names of ``operations`` joined by ``+``,
        the class that :meth:`apply` gives a record they all changed.
        """
        operations = [self._fitted_operation(operation) for operation in _operation_list(operations)]
        error_class = error_class or "+".join(operation.name for operation in operations)
        model = self._run.loop.detector_model
        if self.engine.detector is None:
            raise ValueError("the session has no learned detector; create it with detector=LearnedDetector()")
        if model is None:
            raise ValueError("the detector has not learned any error class yet; clean more batches first (it needs "
                             f"{self.engine.detector.min_records} cleaned records)")
        if error_class not in model.classes:
            raise ValueError(f"the detector knows no error class {error_class!r}; its classes are {model.classes}")
        with self._progress(f"finding class {error_class}"):
            rows, locations = self._class_members(error_class)
        frame = rows.to_pandas()
        cleaned, removed, applied = _run_operations(operations, frame, self.key)
        pieces = [pd.DataFrame({self.key: removed, "column": None, "before": None, "after": "removed"})]
        kept = frame[~frame[self.key].isin(removed)].reset_index(drop=True)
        for column in self.schema.names:
            changed = np.flatnonzero(changed_mask(kept[column], cleaned[column]))
            if changed.size:
                pieces.append(pd.DataFrame({self.key: kept[self.key].to_numpy()[changed], "column": column,
                                            "before": kept[column].to_numpy(dtype=object)[changed],
                                            "after": cleaned[column].to_numpy(dtype=object)[changed]}))
        changes = pd.concat([piece for piece in pieces if len(piece)] or [pieces[0]], ignore_index=True)
        unusable = int(np.isnan(self._labels(cleaned)).sum())
        return ClassPreview(_Applied(operations), error_class, len(frame), len(applied), changes, unusable, rows,
                            locations, self._state())

    def _state(self) -> tuple:
        return self._run.t, self._run.loop.store.size

    def _labels(self, rows: pd.DataFrame) -> np.ndarray:
        """Return the model's label of each row, NaN where the label is missing or invalid."""
        table = pa.Table.from_pandas(rows[list(self.schema.names)], schema=self.schema, preserve_index=False)
        return self.prepared.featurizer.labels(table)

    def _class_members(self, error_class: str):
        """Return the uncleaned, untrusted records the detector assigns to ``error_class`` and their locations."""
        loop = self._run.loop
        model = loop.detector_model
        target = model.classes.index(error_class)
        sc = self._spark.sparkContext
        shipped = sc.broadcast((model, loop.store.positions))
        empty = np.empty(0, dtype=np.int64)

        def members(block):
            detector, positions = shipped.value
            dirty = np.ones(block.size, dtype=bool)
            dirty[positions.get(block.partition, empty)] = False
            if block.flagged is not None:
                dirty &= block.flagged
            rows = np.flatnonzero(dirty)
            if rows.size == 0:
                return block.partition, rows, block.raw.slice(0, 0)
            probabilities = detector.probabilities(block.X[rows])
            chosen = rows[(probabilities.argmax(axis=1) == target) & ~detector.certified(block.X[rows], probabilities)]
            return block.partition, chosen, block.raw.take(pa.array(chosen, pa.int64()))

        parts = loop.blocks.map_collect(members)
        shipped.destroy()
        tables = [table for _, _, table in parts]
        locations = tuple((partition, positions) for partition, positions, _ in parts)
        return pa.concat_tables(tables), locations

    def apply_to_class(self, operations, *, error_class: str | None = None, preview: ClassPreview | None = None):
        """Apply operations to every uncleaned record the detector assigns to their error class.

        The records join the cleaned ones at once, as if cleaned in the
        last iteration; they were not drawn, so they carry no importance
        weight.  They count toward the budget.  Pass the :meth:`preview`
        you checked to apply exactly the records it showed.
        """
        if self._rows or self._removed:
            raise ValueError("finish the current batch first: records of it were handed back and the model has not "
                             "taken its step")
        if preview is None:
            preview = self.preview(operations, error_class=error_class)
        elif preview.state != self._state():
            raise ValueError(
                f"the preview was made at iteration {preview.state[0]} with {preview.state[1]} records cleaned, and "
                f"the session is now at iteration {self._run.t} with {self._run.loop.store.size}; some of its "
                "records may be cleaned already, so make a new preview"
            )
        rows = preview.rows
        if rows.num_rows == 0:
            logger.info("No uncleaned record is in error class %r; nothing to apply", preview.error_class)
            return self.status()
        loop, run = self._run.loop, self._run
        partitions = np.concatenate([np.full(len(p), part) for part, p in preview.locations])
        positions = np.concatenate([np.asarray(p, dtype=np.int64) for _, p in preview.locations])
        frame = rows.to_pandas()
        cleaned, removed, applied = _run_operations(preview.operation.operations, frame, self.key)
        unusable = np.isnan(self._labels(cleaned))
        if unusable.any():
            # Such a record cannot join the cleaned ones: it has no label to train on.  It stays uncleaned.
            left_out = set(cleaned.loc[unusable, self.key].tolist())
            logger.warning("Leaving %d records of error class %r uncleaned: after %s their label %r is still "
                           "missing or invalid; remove them or fix the label by hand", len(left_out),
                           preview.error_class, preview.operation, self.prepared.featurizer.label["name"])
            kept = ~frame[self.key].isin(left_out).to_numpy()
            frame, rows = frame[kept].reset_index(drop=True), rows.filter(pa.array(kept))
            partitions, positions = partitions[kept], positions[kept]
            cleaned = cleaned[~unusable].reset_index(drop=True)
            applied = {k: entry for k, entry in applied.items() if k not in left_out}
        keys = frame[self.key].tolist()
        try:
            table = validate_cleaned(frame, CleanedBatch(cleaned, removed), self.key, self.schema)
            X, y = self.engine._features_of(rows, table, removed, self.prepared.featurizer)
        except CleanerError as error:
            raise ValueError(f"{preview.operation} produced invalid records: {error}") from None
        X_dirty, y_dirty = self.prepared.featurizer.transform(rows)
        records = self.engine._audit_records(frame, table.to_pylist(), removed, run.t, [], np.zeros(0), applied=True)
        by_key = {record["key"]: record for record in records}
        ordered = [by_key[k] for k in keys]
        for record in ordered:
            entry = applied.get(record["key"])
            record["error_class"] = entry.name if entry is not None else CLEAN
            record["sample"] = "class"
            record["operation"] = entry.describe() if entry is not None else None
        classes = np.array([record["error_class"] for record in ordered], dtype=object)
        loop.store.add(partitions, positions, X, y, X_dirty, y_dirty, classes, table, removed, iteration=run.t,
                       inverse_probability=np.zeros(len(keys)))
        if loop.output:
            loop.output.append_audit(ordered)
        loop.audit.extend(ordered)
        self.engine._learn(loop)
        self._record_operations(preview.operation.operations)
        # A batch drawn before these records were cleaned may contain them.
        self._drawn, self._frame = None, None
        logger.info("Applied %s to %d records of error class %r (%d changed)", preview.operation, len(keys),
                    preview.error_class, len(applied))
        if run.finished is None and self._remaining() <= 0:
            run.finished = "budget spent"
        return self.status()

    # -- status -------------------------------------------------------------

    def status(self) -> SessionStatus:
        """Return records cleaned, the held-out metric and the last step."""
        run = self._run
        last = run.history[-1] if run.history else {}
        metric_name = "accuracy" if self.engine.loss.task == "classification" else "rmse"
        dirty_test = self.prepared.dirty_model.metrics.get("test", {})
        test = last.get("test", dirty_test)
        pending = 0
        if self._frame is not None:
            pending = len(self._frame) - len(self._rows) - len(self._removed)
        return SessionStatus(
            iteration=run.t,
            records_cleaned=run.loop.store.size,
            records=self.prepared.n_total,
            budget=self.engine.budget,
            batch_size=self.engine.batch_size,
            batch_pending=pending,
            metric=metric_name if metric_name in dirty_test else None,
            metric_value=test.get(metric_name),
            dirty_metric_value=dirty_test.get(metric_name),
            step_size=last.get("step_size"),
            step_norm=last.get("step_norm"),
            model_error=last.get("model_error"),
            finished=run.finished,
        )

    # -- diagnose, round trip and report --------------------------------------

    def _background(self, size: int, seed: int):
        """Return a uniform sample of uncleaned records: features, labels, suspect flags and rows."""
        loop = self._run.loop
        uncleaned = self.prepared.n_total - loop.store.size
        share = min(1.0, size / max(uncleaned, 1))
        sc = self._spark.sparkContext
        shipped = sc.broadcast((loop.detector_model, loop.store.positions))
        empty = np.empty(0, dtype=np.int64)

        def sample(block):
            detector, positions = shipped.value
            rng = np.random.default_rng([seed, block.partition])
            candidates = np.setdiff1d(np.arange(block.size), positions.get(block.partition, empty))
            chosen = candidates[rng.random(candidates.size) < share]
            X = block.X[chosen]
            X = X.toarray() if hasattr(X, "toarray") else np.asarray(X)
            if detector is not None:
                suspect = detector.clean_probability(detector.probabilities(X)) < 0.5
            else:
                suspect = np.zeros(chosen.size, dtype=bool)
            return X, block.y[chosen], suspect, block.raw.take(pa.array(chosen, pa.int64()))

        parts = loop.blocks.map_collect(sample)
        shipped.destroy()
        X = np.vstack([p[0] for p in parts])
        return X, np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts]), \
            pa.concat_tables([p[3] for p in parts])

    def diagnose(self, *, sample: int = 500, method: str = "auto", seed: int = 0, columns: list | None = None):
        """Return a 2-D embedding of the current batch among a uniform sample of the uncleaned records.

        Points are coloured by label; once the detector has learned a class,
        the records it suspects of being dirty are marked.
        In a notebook the result shows the plot and a table of the batch;
        ``.to_png(path)`` writes the plot.
        """
        from .diagnose import diagnose

        if not self._ensure_batch():
            raise ValueError("no batch is open to diagnose (the budget is spent or no dirty record is left)")
        with self._progress("sampling for diagnose"):
            X_background, y_background, suspect_background, raw = self._background(sample, seed)
        featurizer = self.prepared.featurizer
        X_batch, y_batch = featurizer.transform(self._drawn.batch)
        X_batch = X_batch.toarray() if hasattr(X_batch, "toarray") else np.asarray(X_batch)
        model = self._run.loop.detector_model
        if model is not None:
            suspect_batch = model.clean_probability(model.probabilities(X_batch)) < 0.5
        else:
            suspect_batch = np.zeros(X_batch.shape[0], dtype=bool)
        unknown = [c for c in columns or [] if c not in self.schema.names]
        if unknown:
            raise ValueError(f"cannot show column(s) {unknown} in the diagnose table; the table's columns are "
                             f"{self.schema.names}")
        shown = [c for c in columns if c != self.key] if columns else [c for c in self.schema.names if c != self.key][:6]
        label_values = [featurizer.label_value(v) if np.isfinite(v) else None for v in y_background]
        batch_labels = [featurizer.label_value(v) if np.isfinite(v) else None for v in y_batch]
        details_background = raw.to_pandas()[[self.key, *shown]]
        details_batch = self._frame[[self.key, *shown, SCORE_COLUMN, CLASS_COLUMN]]
        return diagnose(X_background, np.array(label_values, dtype=object), X_batch,
                        np.array(batch_labels, dtype=object), suspect_background=suspect_background,
                        suspect_batch=suspect_batch, details_background=details_background,
                        details_batch=details_batch, method=method, seed=seed,
                        title=f"batch {self._run.t + 1} among {len(y_background)} uncleaned records")

    def export_batch(self, path: str, *, overwrite: bool = False) -> str:
        """Write the records of the current batch not yet handed back to CSV or Parquet, for editing elsewhere.

        An existing file is kept unless ``overwrite`` is true, since it may hold edits not yet imported.
        """
        import os

        from .roundtrip import export_batch

        if os.path.exists(path) and not overwrite:
            raise FileExistsError(f"{path} exists and may hold edits not yet imported; import it with "
                                  "import_batch(), or pass overwrite=True")
        frame = self.suggest()
        if frame.empty:
            raise ValueError("no batch is open to export (the budget is spent or no dirty record is left)")
        return export_batch(frame, path, key=self.key, extra_columns=list(ADDED_COLUMNS), schema=self.schema)

    def import_batch(self, path: str):
        """Read an edited export back: valid rows are handed back, and the returned result lists the bad rows.

        Rows absent from the file, and rows with a problem, stay open in
        the batch.  Fix them and import again, or hand them back another way.
        """
        from .roundtrip import ImportProblem, import_batch

        if not self._ensure_batch():
            raise ValueError("no batch is open to import into")
        open_rows = self.suggest()
        result = import_batch(path, open_rows[list(self.schema.names)], key=self.key, schema=self.schema,
                              extra_columns=list(ADDED_COLUMNS))
        if len(result.cleaned):
            # A valid value can still be a label the model cannot use; such rows stay open like any bad row.
            unusable = np.isnan(self._labels(result.cleaned))
            label = self.prepared.featurizer.label["name"]
            for row in result.cleaned[unusable].to_dict(orient="records"):
                result.problems.append(ImportProblem(
                    row[self.key], result.rows.get(row[self.key]), label, row[label],
                    f"{row[label]!r} is not a usable label; give a valid label or mark the record for removal"))
            result.problems.sort(key=lambda problem: problem.row or 0)
            result.cleaned = result.cleaned[~unusable].reset_index(drop=True)
        if result.problems:
            logger.warning("%d problems in %s; the rows with problems were not taken:\n%s", len(result.problems),
                           path, result.summary())
        if len(result.cleaned):
            self.clean(result.cleaned)
        if result.removed:
            self.remove(result.removed)
        return result

    def report(self, path: str, *, diagnose: bool = True, method: str = "auto", sample: int = 500,
               recent: int = 50) -> list[str]:
        """Write one self-contained HTML report and its PNGs; return the files written.

        The report has the model change and held-out metric by iteration,
        the records cleaned by error class, the diagnose plot of the open
        batch (``method`` and ``sample`` as in :meth:`diagnose`) and a
        summary of the audit trail with its ``recent`` latest records.
        """
        from .htmlreport import write_report

        diagnosis = None
        if diagnose and self._ensure_batch():
            diagnosis = self.diagnose(method=method, sample=sample)
        status = self.status()
        summary = {
            "records": status.records,
            "records cleaned": status.records_cleaned,
            "budget": status.budget,
            "iterations": status.iteration,
            "batch size": status.batch_size,
            "seed": self.engine.seed,
            "loss": self.engine.loss.name,
        }
        if status.metric is not None:
            summary[f"held-out {status.metric}"] = status.metric_value
            summary[f"held-out {status.metric} of the dirty model"] = status.dirty_metric_value
        for name, description in self.operations.items():
            summary[f"operation {name}"] = json.dumps(description, default=str)
        return write_report(path, history=self.history, audit=self.audit, title="ActiveClean session",
                            summary=summary, diagnosis=diagnosis,
                            metric_name=status.metric if self.history else None, recent=recent)

    # -- save and load --------------------------------------------------------

    def save(self, path: str) -> str:
        """Save the session to a directory (local or any Hadoop filesystem URI) so :meth:`load` can resume it.

        The model, cleaned records, detector, history, audit trail and the
        records handed back for the open batch are saved.  The table itself
        is not: :meth:`load` takes it again and checks it is the same.
        """
        from pyspark import cloudpickle

        storage = storage_for(path, self._spark)
        storage.makedirs(path)
        checkpoints = Checkpoints(storage.join(path, CHECKPOINT_DIRECTORY), keep=1, spark=self._spark)
        run = self._run
        with self._progress("saving"):
            self.engine.save_checkpoint(run, checkpoints)
        if self._rows or self._removed:
            journal = checkpoints.journal(run.t + 1, self.schema, self.key)
            rows = pd.DataFrame(list(self._rows.values()), columns=list(self.schema.names))
            operations = {k: applied.name for k, applied in self._operations.items()}
            journal.add(CleanedBatch(rows, list(self._removed), operations))
        engine = self.engine.clone(cleaner=_HandedBack())
        session = {
            "format": FORMAT,
            "iteration": run.t,
            "records cleaned": run.loop.store.size,
            "operations": self.operations,
            "fitted operations": {name: op.describe() for name, op in self._fitted.items()},
            "table": {"columns": list(self.df.columns), "records": self.prepared.n_total},
        }
        audit = "".join(dumps_record(record) + "\n" for record in self.audit).encode()
        storage.write(storage.join(path, ENGINE_FILE), cloudpickle.dumps(engine))
        storage.write(storage.join(path, AUDIT_FILE), audit)
        # Written last, so a directory without it was cut off while being saved.
        storage.write(storage.join(path, SESSION_FILE), json.dumps(session, indent=1, default=str).encode())
        logger.info("Saved the session after iteration %d (%d records cleaned) to %s", run.t,
                    run.loop.store.size, path)
        return path

    @classmethod
    def load(cls, path: str, df, *, test=None, reference=None, budget: int | None = None,
             progress: bool | None = None) -> "CleaningSession":
        """Resume a session saved with :meth:`save` on the same table ``df``, possibly in another Spark session.

        ``budget`` replaces the saved session's budget, for example to clean
        more records.  The saved engine is unpickled, so load only sessions
        you trust.  A table that differs from the saved session's raises
        CheckpointError.
        """
        import pickle

        storage = storage_for(path, df.sparkSession)
        session_file = storage.join(path, SESSION_FILE)
        if not storage.exists(session_file):
            raise CheckpointError(f"{path!r} contains no saved session (no {SESSION_FILE}); save one with "
                                  "CleaningSession.save(path)")
        described = json.loads(storage.read(session_file))
        if described.get("format") != FORMAT:
            raise CheckpointError(f"{session_file!r} has format {described.get('format')!r}, this version reads "
                                  f"format {FORMAT}")
        # Cheap checks first: the full comparison needs the table cached and the dirty model trained.
        table = described.get("table", {})
        if table and list(df.columns) != table["columns"]:
            raise CheckpointError(f"cannot load the session saved in {path!r} on this table: its columns are "
                                  f"{df.columns}, the saved session's were {table['columns']}")
        if table and df.count() != table["records"]:
            raise CheckpointError(f"cannot load the session saved in {path!r} on this table: it has {df.count()} "
                                  f"records, the saved session's had {table['records']}")
        engine = pickle.loads(storage.read(storage.join(path, ENGINE_FILE)))
        if budget is not None:
            engine.budget = _positive_budget(budget)
        self = cls.__new__(cls)
        checkpoints = Checkpoints(storage.join(path, CHECKPOINT_DIRECTORY), keep=1, spark=df.sparkSession)
        try:
            self._open(engine, df, test=test, reference=reference, budget=engine.budget, progress=progress,
                       checkpoint=checkpoints)
        except CheckpointError as error:
            raise CheckpointError(f"cannot load the session saved in {path!r} on this table: {error}") from None
        self.operations = described.get("operations", {})
        for name, description in described.get("fitted operations", {}).items():
            try:
                self._fitted[name] = operation_from_dict(description)
            except ValueError:
                logger.info("Operation %r is a custom function and is not restored; pass it again", name)
        audit = storage.read(storage.join(path, AUDIT_FILE)).decode()
        self._run.loop.audit = [json.loads(line) for line in audit.splitlines() if line]
        returned = checkpoints.journal(self._run.t + 1, self.schema, self.key).returned()
        if returned is not None and self._ensure_batch():
            for row in returned.table.to_dict(orient="records"):
                self._rows[row[self.key]] = row
            self._removed = list(returned.removed)
            for k, name in returned.operations.items():
                self._operations[k] = _Applied([self._fitted[part] for part in name.split("+")]) \
                    if all(part in self._fitted for part in name.split("+")) else name
        logger.info("Loaded the session after iteration %d (%d records cleaned, %d handed back for the open batch)",
                    self._run.t, self._run.loop.store.size, len(self._rows) + len(self._removed))
        return self

    # -- results --------------------------------------------------------------

    def result(self, output_dir: str | None = None, *, overwrite: bool = False, table=None):
        """Return the :class:`ActiveCleanResult` so far; with ``output_dir``, also write the model, table and audit."""
        from .output import OutputDirectory

        run = self._run
        output = OutputDirectory(output_dir, overwrite=overwrite) if output_dir else None
        saved = run.loop.output
        run.loop.output = output
        try:
            if output is not None:
                output.append_audit(self.audit)
                for record in run.history:
                    output.append_history(record)
            return self.engine._result(run, table=table)
        finally:
            run.loop.output = saved

    def close(self) -> None:
        """Release the cached table."""
        self.prepared.release()

    def __enter__(self) -> "CleaningSession":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"CleaningSession({self.key!r})\n{self.status()}"
