"""The ActiveClean loop: dirty model, importance-sampled cleaning, unbiased updates."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from .blocks import arrow_partitions, check_key, featurize_partitions
from .cleaners import Cleaner, CleanedBatch, CleanerError, validate_cleaned
from .features import FeatureSpec, Featurizer
from .losses import Loss
from .model import ActiveCleanModel, evaluate_blocks
from .optimize import block_objective, fit_lbfgs
from .output import OutputDirectory
from .sampler import DEFAULT_FLOOR, DRIVER_STREAM, allocate_draws, random_generator, score_and_draw
from .updater import PRECONDITIONERS, Preconditioner, StepSchedule, batch_gradient, controlled_batch_gradient, clean_gradient, combined_gradient

__all__ = ["ActiveClean", "ActiveCleanResult", "PreparedData"]

logger = logging.getLogger(__name__)


def _positive_int(name, value, *, allow_zero=False):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < (0 if allow_zero else 1):
        bound = "an integer >= 0" if allow_zero else "a positive integer"
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    return int(value)


@dataclass
class ActiveCleanResult:
    """Model, cleaned records and per-iteration history of one run."""

    model: ActiveCleanModel
    dirty_model: ActiveCleanModel
    reference_model: ActiveCleanModel | None
    cleaned: pa.Table
    removed: list
    history: list = field(default_factory=list)
    output_dir: str | None = None
    seconds: float = 0.0  # wall-clock time of prepare and run, outputs included

    @property
    def n_cleaned(self) -> int:
        return self.cleaned.num_rows + len(self.removed)


@dataclass
class PreparedData:
    """Cached blocks and the models trained before the first iteration."""

    df: object
    blocks: object
    featurizer: Featurizer
    n_total: int
    schema: pa.Schema
    dirty_model: ActiveCleanModel
    reference_model: ActiveCleanModel | None
    test_blocks: object
    curvature: np.ndarray | None
    seconds: float

    def release(self) -> None:
        """Drop the cached blocks from the cluster."""
        self.blocks.unpersist()
        if self.test_blocks is not None:
            self.test_blocks.unpersist()


class _CleanedStore:
    """Driver-side R_clean: cleaned rows, their features and their block positions.

    NOTE: the features of R_clean stay in driver memory (8 bytes times budget
    times features), which bounds the budget by the driver's heap.
    """

    def __init__(self, schema: pa.Schema, n_features: int):
        self.rows = schema.empty_table()
        self.removed: list = []
        # Feature rows live in a buffer that doubles when full, so adding a
        # batch costs O(batch) instead of copying all of R_clean again.
        self._X = np.empty((64, n_features))
        self._y = np.empty(64)
        self.size = 0
        self.positions: dict[int, np.ndarray] = {}

    @property
    def X(self) -> np.ndarray:
        return self._X[: self.size]

    @property
    def y(self) -> np.ndarray:
        """Labels of R_clean; NaN for removed records, which have a zero gradient."""
        return self._y[: self.size]

    def add(self, partitions, positions, X, y, rows: pa.Table, removed: list) -> None:
        end = self.size + y.size
        if end > self._y.size:
            capacity = max(end, 2 * self._y.size)
            self._X = np.concatenate([self._X[: self.size], np.empty((capacity - self.size, self._X.shape[1]))])
            self._y = np.concatenate([self._y[: self.size], np.empty(capacity - self.size)])
        self._X[self.size : end] = X
        self._y[self.size : end] = y
        self.size = end
        for partition in np.unique(partitions):
            new = positions[partitions == partition]
            old = self.positions.get(int(partition), np.empty(0, dtype=np.int64))
            self.positions[int(partition)] = np.concatenate([old, new])
        if rows.num_rows:
            self.rows = pa.concat_tables([self.rows, rows])
        self.removed += removed


class ActiveClean:
    """Train a model while cleaning only the records whose cleaning matters most.

    Parameters
    ----------
    key : str
        Column with a unique, stable id per record.
    features : FeatureSpec or Featurizer
        Columns to featurize (fitted on the dirty data), or a frozen
        featurizer such as a :class:`FunctionFeaturizer`.
    loss : Loss
        Convex loss with its L2 penalty, for example ``LogisticLoss(reg=1e-3)``.
    cleaner : Cleaner
        Procedure applied to each drawn batch.
    budget : int
        Number of records to hand to the cleaner in all (k).
    batch_size : int, default=50
        Draws per iteration (b); the last batch is cut to the remaining budget.
    step : StepSchedule, default=StepSchedule("inverse_sqrt", 0.1)
        Step-size schedule gamma_t.
    floor : float, default=0.05
        Share eps of the draw probability spread uniformly over R_dirty.
    seed : int, default=0
        Seed of every random draw.
    num_partitions : int, optional
        Partitions of the cached relation; default Spark's default parallelism.
    tol : float, default=0.0
        Stop once the update step's norm falls below this.
    target : float, optional
        Stop once the held-out metric reaches this value (accuracy for
        classification, at least; RMSE for regression, at most).
    preconditioner : {"hessian", "diagonal", "none"}, default="hessian"
        Fixed matrix P in ``theta -= gamma_t * P^-1 g``: the curvature of
        the dirty objective at the dirty model, its diagonal, or none.
    control_variate : bool, default=True
        Estimate g_S as the exact mean dirty gradient over R_dirty plus the
        importance-weighted mean of what cleaning changes in the drawn
        gradients (same expectation, lower variance when cleaning changes
        little).  Off, g_S is the plain importance-weighted clean gradient.
    """

    def __init__(
        self,
        *,
        key: str,
        features: FeatureSpec | Featurizer,
        loss: Loss,
        cleaner: Cleaner,
        budget: int,
        batch_size: int = 50,
        step: StepSchedule | None = None,
        floor: float = DEFAULT_FLOOR,
        seed: int = 0,
        num_partitions: int | None = None,
        tol: float = 0.0,
        target: float | None = None,
        preconditioner: str = "hessian",
        control_variate: bool = True,
    ):
        if not isinstance(key, str) or not key:
            raise ValueError(f"key must name a column, got {key!r}")

        if not isinstance(features, (FeatureSpec, Featurizer)):
            raise TypeError(f"features must be a FeatureSpec or Featurizer, got {type(features).__name__}")
        if not isinstance(loss, Loss):
            raise TypeError(f"loss must be a Loss, got {type(loss).__name__}")
        if not isinstance(cleaner, Cleaner):
            raise TypeError(f"cleaner must be a Cleaner, got {type(cleaner).__name__}")

        if not (isinstance(floor, (int, float)) and 0 < floor <= 1):
            raise ValueError(f"floor must be a number in (0, 1], got {floor!r}")
        if not (isinstance(tol, (int, float)) and tol >= 0):
            raise ValueError(f"tol must be a number >= 0, got {tol!r}")
        if target is not None and (isinstance(target, bool) or not isinstance(target, (int, float))):
            raise ValueError(f"target must be a number (test accuracy or RMSE), got {target!r}")

        self.key = key
        self.features = features
        self.loss = loss
        self.cleaner = cleaner
        self.budget = _positive_int("budget", budget)
        self.batch_size = _positive_int("batch_size", batch_size)
        self.step = step or StepSchedule()
        self.floor = float(floor)
        self.seed = _positive_int("seed", seed, allow_zero=True)
        self.num_partitions = None if num_partitions is None else _positive_int("num_partitions", num_partitions)
        if preconditioner not in PRECONDITIONERS:
            raise ValueError(f"preconditioner must be one of {', '.join(PRECONDITIONERS)}, got {preconditioner!r}")
        self.tol = float(tol)
        self.target = target
        self.preconditioner = preconditioner
        if not isinstance(control_variate, bool):
            raise ValueError(f"control_variate must be true or false, got {control_variate!r}")
        self.control_variate = control_variate

    # -- set-up -----------------------------------------------------------

    def _check_columns(self, df, table_name: str) -> None:
        label = self.features.label if isinstance(self.features, FeatureSpec) else self.features.label["name"]
        roles = {column: "a feature" for column in self.features.columns}
        roles[label] = "the label"
        roles[self.key] = "the key"
        absent = [column for column in roles if column not in df.columns]
        if absent:
            named = ", ".join(f"{column!r} ({roles[column]})" for column in absent)
            raise ValueError(f"{table_name} has no column {named}; its columns are {df.columns}")

    def _fit_featurizer(self, partitions) -> Featurizer:
        if isinstance(self.features, Featurizer):
            return self.features
        spec = self.features
        partials = partitions.map(lambda item: spec.partial_statistics(item[1])).collect()
        return spec.fit_from_statistics(partials)

    def _blocks(self, df, featurizer: Featurizer | None = None):
        partitions = arrow_partitions(df, self.key, self.num_partitions or df.sparkSession.sparkContext.defaultParallelism)
        if featurizer is None:
            featurizer = self._fit_featurizer(partitions)
        blocks = featurize_partitions(partitions, featurizer, self.key)
        return blocks, featurizer

    # -- the loop ----------------------------------------------------------

    def prepare(self, df, *, test=None, reference=None) -> "PreparedData":
        """Cache the relation, fit the featurizer and train the dirty model (and theta_c).

        Parameters
        ----------
        df : pyspark.sql.DataFrame
            Dirty training relation.
        test : pyspark.sql.DataFrame, optional
            Clean held-out records; the metric is logged every iteration.
        reference : pyspark.sql.DataFrame, optional
            Fully clean version of ``df`` (same keys).  When given, the fully
            clean model theta_c is trained and the relative model error
            ``||theta - theta_c|| / ||theta_c||`` is logged.
        """
        started = time.perf_counter()
        self._check_columns(df, "input table")
        check_key(df, self.key)
        if test is not None:
            self._check_columns(test, "test table")
        if reference is not None:
            self._check_columns(reference, "reference table")
        if hasattr(self.cleaner, "check_columns"):
            self.cleaner.check_columns(df.columns)

        blocks, featurizer = self._blocks(df)
        sizes = blocks.map(lambda block: block.size).collect()
        n_total = int(sum(sizes))
        if n_total == 0:
            blocks.unpersist()
            raise ValueError("input table is empty")
        logger.info("Cached %d records in %d partitions, %d features", n_total, len(sizes), featurizer.n_features)

        theta = fit_lbfgs(block_objective(blocks, self.loss), np.zeros(self.loss.n_parameters(featurizer.n_features)))
        test_blocks = self._blocks(test, featurizer)[0] if test is not None else None
        dirty_metrics = evaluate_blocks(test_blocks, self.loss, theta) if test_blocks is not None else {}
        dirty_model = ActiveCleanModel(theta, featurizer, self.loss, {"test": dirty_metrics})
        logger.info("Dirty model trained in %.1f s%s", time.perf_counter() - started, _format_metrics(dirty_metrics))
        reference_model = self._reference_model(reference, df, featurizer, test_blocks)
        return PreparedData(
            df=df,
            blocks=blocks,
            featurizer=featurizer,
            n_total=n_total,
            schema=blocks.first().raw.schema,
            dirty_model=dirty_model,
            reference_model=reference_model,
            test_blocks=test_blocks,
            curvature=self._curvature(blocks, theta),
            seconds=time.perf_counter() - started,
        )

    def _curvature(self, blocks, theta):
        """Mean curvature of the dirty objective at theta, or None when the loss defines none."""
        loss = self.loss
        if type(loss).curvature_sums is Loss.curvature_sums:
            if self.preconditioner != "none":
                logger.warning("Loss %s defines no curvature_sums; updates run without a preconditioner", loss.name)
            return None
        shipped = blocks.context.broadcast(theta)

        def block_curvature(block):
            keep = ~np.isnan(block.y)
            return loss.curvature_sums(block.X[keep], block.y[keep], shipped.value), int(keep.sum())

        sums, count = blocks.map(block_curvature).treeReduce(lambda a, b: (a[0] + b[0], a[1] + b[1]))
        shipped.destroy()
        return sums / max(count, 1) + np.diag(loss.penalty_curvature(theta.size))

    def fit(self, df, *, test=None, reference=None, output_dir: str | None = None, overwrite: bool = False,
            table=None):
        """Run ActiveClean on a dirty Spark DataFrame and return an :class:`ActiveCleanResult`.

        ``test`` and ``reference`` are as in :meth:`prepare`; ``output_dir``,
        ``overwrite`` and ``table`` as in :meth:`run`.
        """
        output = OutputDirectory(output_dir, overwrite=overwrite) if output_dir else None
        prepared = self.prepare(df, test=test, reference=reference)
        try:
            return self.run(prepared, output=output, table=table)
        finally:
            prepared.release()

    def run(self, prepared: "PreparedData", *, output_dir: str | None = None, overwrite: bool = False, table=None,
            output=None):
        """Run the cleaning loop on prepared data and return an :class:`ActiveCleanResult`.

        The prepared data is left cached, so several runs (other seeds, step
        sizes or budgets) can share one :meth:`prepare`.

        Parameters
        ----------
        prepared : PreparedData
            Output of :meth:`prepare`.
        output_dir : str, optional
            Directory for the model, cleaned table, history and audit trail.
        overwrite : bool, default=False
            Replace the outputs of an earlier run in ``output_dir``.
        table : pyspark.sql.DataFrame, optional
            Table written to ``output_dir`` with the cleaned values merged
            in; default the training relation.  Pass the whole input when
            part of it was held out for testing.
        """
        if output is None and output_dir:
            output = OutputDirectory(output_dir, overwrite=overwrite)
        started = time.perf_counter() - prepared.seconds
        featurizer, blocks, test_blocks = prepared.featurizer, prepared.blocks, prepared.test_blocks
        dirty_model, reference_model = prepared.dirty_model, prepared.reference_model
        theta_c = reference_model.theta if reference_model is not None else None
        preconditioner = None
        if self.preconditioner != "none" and prepared.curvature is not None:
            preconditioner = Preconditioner(prepared.curvature, self.preconditioner)

        theta = dirty_model.theta.copy()
        schedule = self.step.fresh()
        store = _CleanedStore(prepared.schema, featurizer.n_features)
        history = []
        t = 0
        error = None
        try:
            while store.size < self.budget:
                t += 1
                record = self._iterate(t, blocks, featurizer, theta, store, output, preconditioner, schedule)
                if record is None:
                    break
                theta, record = record
                if test_blocks is not None:
                    record["test"] = evaluate_blocks(test_blocks, self.loss, theta)
                if theta_c is not None:
                    record["model_error"] = _relative_error(theta, theta_c)
                record["seconds"] = time.perf_counter() - started
                history.append(record)
                if output:
                    output.append_history(record)
                logger.info(
                    "iteration %d: %d cleaned, step norm %.3g%s%s, %.1f s",
                    t, record["cleaned"], record["step_norm"], _format_metrics(record.get("test")),
                    f", model error {record['model_error']:.4f}" if "model_error" in record else "", record["seconds"],
                )
                if self._should_stop(record):
                    break
        except CleanerError as failure:
            error = failure
            logger.error("Cleaner failed at iteration %d: %s; saving the %d records cleaned so far", t, failure, store.size)
        finally:
            dirty_metrics = dirty_model.metrics.get("test", {})
            metrics = {"test": history[-1].get("test", {}) if history else dirty_metrics, "dirty_test": dirty_metrics}
            if reference_model is not None:
                metrics["clean_test"] = reference_model.metrics.get("test", {})
                metrics["model_error"] = _relative_error(theta, theta_c)
                metrics["dirty_model_error"] = _relative_error(dirty_model.theta, theta_c)
            metrics["records_cleaned"] = store.size
            result = ActiveCleanResult(
                model=ActiveCleanModel(theta, featurizer, self.loss, metrics),
                dirty_model=dirty_model,
                reference_model=reference_model,
                cleaned=store.rows,
                removed=store.removed,
                history=history,
                output_dir=output.path if output else None,
            )
            if output:
                self._write_outputs(output, prepared.df if table is None else table, result)
        if error is not None:
            raise error
        result.seconds = time.perf_counter() - started
        logger.info("Finished: %d records cleaned in %d iterations, %.1f s", result.n_cleaned, len(history), result.seconds)
        return result

    def _iterate(self, t, blocks, featurizer, theta, store, output, preconditioner, schedule):
        """Run iteration t and return ``(new theta, history record)``, or None when R_dirty is empty."""
        batch_draws = min(self.batch_size, self.budget - store.size)
        sc = blocks.context
        shipped = sc.broadcast((theta, store.positions))
        loss, seed, gradient_sum = self.loss, self.seed, self.control_variate
        empty = np.empty(0, dtype=np.int64)
        parts = blocks.map(
            lambda block: score_and_draw(
                block, loss, shipped.value[0], shipped.value[1].get(block.partition, empty), batch_draws, seed, t,
                gradient_sum=gradient_sum,
            )
        ).collect()
        shipped.destroy()
        rng = random_generator(self.seed, t, DRIVER_STREAM)
        draws, n_dirty, score_total = allocate_draws(parts, batch_draws, self.floor, rng)
        if not draws:
            logger.info("No dirty records left after %d cleaned", store.size)
            return None

        # Each distinct record is cleaned once and counted once per draw.
        by_record: dict = {}
        for draw in draws:
            entry = by_record.setdefault((draw.partition, draw.position), [draw, 0])
            entry[1] += 1
        distinct = [entry[0] for entry in by_record.values()]
        counts = np.array([entry[1] for entry in by_record.values()], dtype=float)
        probabilities = np.array([d.probability for d in distinct])
        candidates = {p.partition: p.candidates for p in parts}
        batch = pa.concat_tables([candidates[d.partition].slice(d.row, 1) for d in distinct])

        cleaned_rows, removed, X, y = self._clean(batch, t, distinct, counts, featurizer, output)

        n_clean = store.size
        if self.control_variate:
            X_dirty, y_dirty = featurizer.transform(batch)
            dirty_sum = np.sum([p.dirty_gradient_sum for p in parts], axis=0)
            g_batch = controlled_batch_gradient(
                self.loss, X, y, X_dirty, y_dirty, theta, counts, probabilities, n_dirty, len(draws), dirty_sum
            )
        else:
            g_batch = batch_gradient(self.loss, X, y, theta, counts, probabilities, n_dirty, len(draws))
        g_clean = clean_gradient(self.loss, store.X, store.y, theta, n_clean)
        direction = combined_gradient(g_batch, g_clean, n_dirty, n_clean)
        if preconditioner is not None:
            direction = preconditioner.solve(direction)
        step = schedule.step(t, direction)
        theta = theta - step

        partitions = np.array([d.partition for d in distinct])
        positions = np.array([d.position for d in distinct], dtype=np.int64)
        store.add(partitions, positions, X, y, cleaned_rows, removed)
        record = {
            "iteration": t,
            "cleaned": store.size,
            "batch_draws": len(draws),
            "batch_records": len(distinct),
            "removed": len(removed),
            "dirty_remaining": n_dirty - len(distinct),
            "score_total": score_total,
            "step_size": schedule(t),
            "step_norm": float(np.linalg.norm(step)),
        }
        return theta, record

    def _clean(self, batch, t, distinct, counts, featurizer, output):
        """Clean and featurize a batch, then append it to the audit trail.

        Returns ``(cleaned rows, removed keys, X, y)`` with X and y in batch order.
        """
        frame = batch.to_pandas()
        try:
            cleaned = self.cleaner.clean(frame, self.key)
            rows = validate_cleaned(frame, cleaned, self.key, batch.schema)
            X, y = self._features_of(batch, rows, list(cleaned.removed), featurizer)
        except CleanerError as error:
            self._save_partial(error.partial, frame, t, distinct, counts, output)
            raise
        # NOTE: the audit lines are synced before this iteration's update, so
        # after a kill the audit trail can hold one batch more than the history.
        if output:
            output.append_audit(
                self._audit_records(frame, rows.to_pylist(), cleaned.removed, t, distinct, counts, applied=True)
            )
        return rows, list(cleaned.removed), X, y

    def _save_partial(self, partial, frame, t, distinct, counts, output):
        """Record what a failing cleaner did return, so none of its work is lost."""
        if output is None or partial is None:
            return
        returned = partial.table
        if len(returned) and self.key in returned.columns:
            returned = returned[returned[self.key].isin(frame[self.key])]
            rows = returned.to_dict(orient="records")
        else:
            rows = []
        # The values are kept as the cleaner returned them, even when they
        # fail the schema check, so that the audit trail loses nothing.
        records = self._audit_records(frame, rows, list(partial.removed), t, distinct, counts, applied=False)
        if records:
            output.append_audit(records)
            logger.warning("Saved %d records the cleaner returned before failing to the audit trail", len(records))

    def _audit_records(self, frame, rows: list[dict], removed, t, distinct, counts, *, applied):
        key = self.key
        dirty = {record[key]: record for record in frame.to_dict(orient="records")}
        cleaned = {record[key]: record for record in rows}
        info = {d.key: (d.probability, int(c)) for d, c in zip(distinct, counts)}
        records = []
        for k in [*cleaned, *removed]:
            before = dirty.get(k, {})
            after = cleaned.get(k)
            if after is None:
                status, changed = "removed", []
            else:
                changed = [c for c in frame.columns if not _same(before.get(c), after.get(c))]
                status = "changed" if changed else "unchanged"
            probability, draws = info.get(k, (None, 0))
            records.append(
                {
                    "key": k,
                    "iteration": t,
                    "status": status,
                    "changed_columns": changed,
                    "probability": probability,
                    "draws": draws,
                    "applied": applied,
                    "dirty": before,
                    "cleaned": after,
                }
            )
        return records

    def _features_of(self, batch, rows, removed, featurizer):
        """Return the cleaned batch's features in batch order; removed records get a NaN label."""
        X_rows, y_rows = featurizer.transform(rows)
        unusable = np.flatnonzero(np.isnan(y_rows))
        if unusable.size:
            bad = rows.column(self.key)[int(unusable[0])].as_py()
            label = featurizer.label["name"]
            value = rows.column(label)[int(unusable[0])].as_py()
            raise CleanerError(
                f"cleaned record {self.key}={bad!r} has label {label}={value!r}, which is not a usable label; "
                "return a valid label or remove the record",
                CleanedBatch(rows.filter(pa.array(~np.isnan(y_rows))).to_pandas(), removed),
            )
        index = {k: i for i, k in enumerate(rows.column(self.key).to_pylist())}
        X = np.zeros((batch.num_rows, featurizer.n_features))
        y = np.full(batch.num_rows, np.nan)
        for i, k in enumerate(batch.column(self.key).to_pylist()):
            if k in index:
                X[i] = X_rows[index[k]]
                y[i] = y_rows[index[k]]
        return X, y

    def _should_stop(self, record) -> bool:
        if record["dirty_remaining"] <= 0:
            return True
        if self.tol > 0 and record["step_norm"] < self.tol:
            logger.info("Step norm %.3g fell below tol %.3g", record["step_norm"], self.tol)
            return True
        if self.target is not None and "test" in record:
            metric = record["test"].get("accuracy", record["test"].get("rmse"))
            if metric is None:  # an empty test table has no metric to compare
                return False
            reached = metric >= self.target if self.loss.task == "classification" else metric <= self.target
            if reached:
                logger.info("Held-out metric %.4g reached the target %.4g", metric, self.target)
                return True
        return False

    def _reference_model(self, reference, df, featurizer, test_blocks):
        """Train theta_c on the fully clean version of the training records."""
        if reference is None:
            return None
        clean = reference.select(*df.columns).join(df.select(self.key), on=self.key, how="left_semi")
        blocks = self._blocks(clean, featurizer)[0]
        theta_c = fit_lbfgs(block_objective(blocks, self.loss), np.zeros(self.loss.n_parameters(featurizer.n_features)))
        blocks.unpersist()
        metrics = evaluate_blocks(test_blocks, self.loss, theta_c) if test_blocks is not None else {}
        logger.info("Fully clean reference model trained%s", _format_metrics(metrics))
        return ActiveCleanModel(theta_c, featurizer, self.loss, {"test": metrics})

    def _write_outputs(self, output, df, result):
        result.model.save(output.path)
        result.dirty_model.save(output.file("dirty_model"))
        if result.reference_model is not None:
            result.reference_model.save(output.file("clean_model"))
        output.write_table(df, self.key, result.cleaned, result.removed)


def _format_metrics(metrics: dict | None) -> str:
    if not metrics:
        return ""
    return ", test " + " ".join(f"{name} {value:.4f}" for name, value in metrics.items() if name != "n")


def _relative_error(theta, theta_c) -> float:
    return float(np.linalg.norm(theta - theta_c) / np.linalg.norm(theta_c))


def _same(a, b) -> bool:
    if a is None or b is None or (isinstance(a, float) and np.isnan(a)) or (isinstance(b, float) and np.isnan(b)):
        a_missing = a is None or (isinstance(a, float) and np.isnan(a))
        b_missing = b is None or (isinstance(b, float) and np.isnan(b))
        return a_missing and b_missing
    return a == b
