"""The ActiveClean loop: dirty model, importance-sampled cleaning, unbiased updates."""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa

from .blocks import FLAG_COLUMN, REFERENCE_PREFIX, arrow_partitions, check_key, featurize_partitions
from .checkpoint import Checkpoints, RunState, describe
from .cleaners import Cleaner, CleanedBatch, CleanerError, validate_cleaned
from .detector import CLEAN, POOLED, DetectorModel, LearnedDetector, RuleDetector, error_classes
from .estimator import ChangeEstimator
from .features import FeatureSpec, Featurizer
from .losses import Loss
from .matrices import take_or_zero
from .model import ActiveCleanModel, evaluate_blocks
from .optimize import block_objective, fit_lbfgs, fit_local
from .output import OutputDirectory
from .sampler import (
    DEFAULT_FLOOR, DRIVER_STREAM, SAMPLINGS, ScoringPlan, allocate_audit, allocate_draws, greedy_draws,
    random_generator, score_and_draw,
)
from .store import CleanedStore
from .updater import (
    DENSE_LIMIT, PRECONDITIONERS, Preconditioner, StepSchedule, batch_gradient, clean_gradient, combined_gradient,
    controlled_batch_gradient, draw_losses,
)

__all__ = ["ActiveClean", "ActiveCleanResult", "PreparedData", "UPDATES"]

# Updates of theta after a batch.  The first two are unbiased SGD steps: from
# the iterate, or from a weighted refit on the cleaned sample when the batch
# shows the refit clearly better.  The last two are the baselines: a full refit on the
# cleaned records only, or on them written back into the dirty relation.
UPDATES = ("sgd", "sgd_refit", "retrain_cleaned", "retrain_all")
STEP_UPDATES = ("sgd", "sgd_refit")
# Names of the starts the "sgd_refit" update chooses from, in the history.
CANDIDATES = ("iterate", "refit")
# The refit becomes the start only when the batch puts its clean loss below
# the iterate's by more than this many standard errors of the difference.
START_MARGIN = 2.0

logger = logging.getLogger(__name__)


def _checkpoints(checkpoint, spark) -> Checkpoints | None:
    """Return the Checkpoints of a directory given as a path, or as it is."""
    if checkpoint is None or isinstance(checkpoint, Checkpoints):
        return checkpoint
    return Checkpoints(checkpoint, spark=spark)


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

    def __repr__(self) -> str:
        return (f"ActiveCleanResult({self.n_cleaned} records cleaned in {len(self.history)} iterations, "
                f"metrics {self.model.metrics.get('test', {})}, output_dir={self.output_dir!r})")


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


_PARAMETERS = (
    "key", "features", "loss", "cleaner", "budget", "batch_size", "step", "floor", "seed", "num_partitions", "tol",
    "target", "preconditioner", "control_variate", "rule", "detector", "estimator", "sampling", "update",
)


@dataclass
class _Loop:
    """State of one run that changes between iterations, besides theta."""

    blocks: object
    featurizer: Featurizer
    store: CleanedStore
    output: OutputDirectory | None
    preconditioner: Preconditioner | None
    schedule: StepSchedule
    detector_model: object = None
    changes: tuple | None = None
    refits: tuple = ()  # the weighted refit on R_clean, a candidate start of the next step
    journal: object = None  # iteration -> Journal of the records the cleaner returns, with a checkpoint
    audit: list | None = None  # the audit records of the run, kept in memory when not None


@dataclass
class _Run:
    """One run of the loop: the prepared data, the iterate and what the next iteration needs."""

    prepared: PreparedData
    loop: _Loop
    theta: np.ndarray
    t: int  # iterations finished
    history: list
    finished: str | None  # why the run stopped, once it has
    started: float  # perf_counter() at which the run's time starts, earlier runs of a resumed job included
    checkpoints: Checkpoints | None
    fingerprint: dict | None
    key_type: pa.DataType


@dataclass
class _Drawn:
    """The batch of iteration t, drawn and not yet cleaned."""

    plan: ScoringPlan
    parts: list
    draws: list  # the importance (or uniform) draws
    audit: list  # the draws from the trusted records
    distinct: list  # one Draw per distinct record, draws first
    counts: np.ndarray  # draws per distinct record
    in_batch: np.ndarray  # True for records of the batch, False for audited trusted ones
    batch: pa.Table  # the distinct records' rows
    n_dirty: int
    score_total: float
    clock: "_Clock"


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
        Partitions of the cached relation.  By default Spark's default
        parallelism, or more when a partition's block would pass about
        1 GiB (the relation is counted to decide).  Each block must stay
        below 2 GB, the largest pickled object Spark takes from Python.
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
    rule : RuleDetector, optional
        Records the rule does not flag are in R_clean from the start.
    detector : LearnedDetector, optional
        Learns error classes from the cleaned records, certifies records
        that look clean, and selects the estimator's correction.
    estimator : bool, optional
        Score records by the norm of their estimated clean gradient (dirty
        gradient plus the mean change that cleaning brought to their error
        class); False scores by the dirty gradient.  The default turns it on
        with a learned detector only: without error classes, one mean change
        is applied to every record.  On BabyProduct (10% budget) that left
        one seed in five with a larger model error than the dirty model.
    sampling : {"importance", "uniform", "oracle", "uncertainty"}, default="importance"
        How batches are drawn: importance sampling, uniform sampling,
        importance sampling by the true clean gradient (needs the
        ``reference`` table), or the records nearest the decision boundary.
    update : {"sgd_refit", "sgd", "retrain_cleaned", "retrain_all"}, default="sgd_refit"
        ``"sgd"`` is the published update: one unbiased SGD step per batch
        from the last iterate.  ``"sgd_refit"`` also keeps a second
        candidate, the model fitted to the cleaned records weighted so that
        they estimate the clean loss over all records
        (:meth:`CleanedStore.sample_weights`).  The step starts from the
        refit when the new batch estimates its clean loss below the
        iterate's by more than ``START_MARGIN`` standard errors.  Both
        candidates are fixed before the batch is drawn, so the estimate is
        unbiased for each.  When many records are dirty, the
        dirty optimum is far from the clean one and few SGD steps stay near
        it, so the refit wins.  Where the dirty model is close, the iterate
        wins.  ``"retrain_cleaned"`` and ``"retrain_all"``
        refit on the cleaned records only, or on every record with the
        cleaned values written back (the Uniform and Naive-Mix baselines).
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
        rule: RuleDetector | None = None,
        detector: LearnedDetector | None = None,
        estimator: bool | None = None,
        sampling: str = "importance",
        update: str = "sgd_refit",
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
        if rule is not None and not isinstance(rule, RuleDetector):
            raise TypeError(f"rule must be a RuleDetector, got {type(rule).__name__}")
        if detector is not None and not isinstance(detector, LearnedDetector):
            raise TypeError(f"detector must be a LearnedDetector, got {type(detector).__name__}")
        if estimator is None:
            estimator = detector is not None
        if not isinstance(estimator, bool):
            raise ValueError(f"estimator must be true or false, got {estimator!r}")
        if sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {', '.join(SAMPLINGS)}, got {sampling!r}")
        if update not in UPDATES:
            raise ValueError(f"update must be one of {', '.join(UPDATES)}, got {update!r}")
        if sampling == "uncertainty" and update in STEP_UPDATES:
            raise ValueError(
                "sampling 'uncertainty' picks records greedily, without draw probabilities, so the SGD update "
                "cannot weight them; use update 'retrain_cleaned' or 'retrain_all'"
            )
        if sampling == "uncertainty" and loss.task != "classification":
            raise ValueError(f"sampling 'uncertainty' needs a classification loss, not {loss.name!r}")
        self.rule = rule
        self.detector = detector
        self.estimator = estimator
        self.sampling = sampling
        self.update = update

    def clone(self, **changes) -> "ActiveClean":
        """Return a new engine with the same parameters except ``changes``, checked again."""
        params = {name: getattr(self, name) for name in _PARAMETERS}
        unknown = [name for name in changes if name not in params]
        if unknown:
            raise TypeError(f"ActiveClean has no parameter {unknown[0]!r}; parameters are {', '.join(_PARAMETERS)}")
        params.update(changes)
        return ActiveClean(**params)

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

    def _blocks(self, df, featurizer: Featurizer | None = None, *, rule: RuleDetector | None = None, reference=None):
        """Cache ``df`` as blocks; the rule's flags and the reference features travel with the rows."""
        source = df
        if rule is not None and rule.expression is not None:
            source = source.withColumn(FLAG_COLUMN, _rule_column(rule.expression, df))
        if reference is not None:
            renamed = [reference[c].alias(REFERENCE_PREFIX + c) for c in df.columns]
            source = source.join(reference.select(reference[self.key], *renamed), on=self.key, how="left")
        count = self._partition_count(df, source, featurizer or self.features, reference is not None)
        partitions = arrow_partitions(source, self.key, count)
        if featurizer is None:
            featurizer = self._fit_featurizer(partitions)
        predicate = rule.flags if rule is not None and rule.predicate is not None else None
        blocks = featurize_partitions(partitions, featurizer, self.key, predicate=predicate)
        return blocks, featurizer

    def _partition_count(self, df, source, features, with_reference: bool) -> int:
        """Return the partitions of the cached table: the setting, else one per core unless blocks grow too large."""
        if self.num_partitions is not None:
            return self.num_partitions
        parallelism = df.sparkSession.sparkContext.defaultParallelism
        per_row = _row_bytes(source.schema, features, 2 if with_reference else 1)
        rows = df.count()
        needed = -(-rows * per_row // BLOCK_BYTES)
        if needed > parallelism:
            logger.info("Caching %d records in %d partitions so that each block stays below %d MiB",
                        rows, needed, BLOCK_BYTES >> 20)
        return max(parallelism, needed)

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

        if self.rule is not None and self.rule.predicate is not None:
            # A quick check on the driver reports a broken predicate before any executor runs it.
            self.rule.flags(df.limit(10).toArrow())
        if self.sampling == "oracle" and reference is None:
            raise ValueError("sampling 'oracle' draws by the true clean gradients, so it needs the reference table")

        blocks, featurizer = self._blocks(df, rule=self.rule, reference=reference)
        try:
            counts = blocks.map_collect(lambda block: (block.size, _flag_count(block), block.raw.schema))
        except Exception as error:
            blocks.unpersist()
            raise _rule_error(error) from None
        sizes = [size for size, _, _ in counts]
        n_total = int(sum(sizes))
        if n_total == 0:
            blocks.unpersist()
            raise ValueError("input table is empty")
        logger.info("Cached %d records in %d partitions, %d features", n_total, len(sizes), featurizer.n_features)
        if self.rule is not None:
            n_flagged = sum(flagged for _, flagged, _ in counts)
            logger.info("Rule flags %d of %d records as possibly dirty; the others are clean from the start",
                        n_flagged, n_total)

        theta = fit_lbfgs(block_objective(blocks, self.loss), np.zeros(self.loss.n_parameters(featurizer.n_features)))
        test_blocks = self._blocks(test, featurizer)[0] if test is not None else None
        dirty_metrics = evaluate_blocks(test_blocks, self.loss, theta) if test_blocks is not None else {}
        dirty_model = ActiveCleanModel(theta, featurizer, self.loss, {"test": dirty_metrics})
        logger.info("Dirty model trained in %.1f s%s", time.perf_counter() - started, _format_metrics(dirty_metrics))
        reference_model = self._reference_model(blocks, featurizer, test_blocks) if reference is not None else None
        return PreparedData(
            df=df,
            blocks=blocks,
            featurizer=featurizer,
            n_total=n_total,
            schema=counts[0][2],
            dirty_model=dirty_model,
            reference_model=reference_model,
            test_blocks=test_blocks,
            curvature=self._curvature(blocks, theta),
            seconds=time.perf_counter() - started,
        )

    def _curvature(self, blocks, theta):
        """Mean curvature of the dirty objective at theta, or None when the loss defines none.

        Beyond ``DENSE_LIMIT`` parameters, where a (p, p) matrix would not
        fit, only its diagonal, shape (p,).
        """
        loss = self.loss
        full = type(loss).curvature_sums is not Loss.curvature_sums
        diagonal = theta.size > DENSE_LIMIT or not full
        if not full and type(loss).curvature_diagonal_sums is Loss.curvature_diagonal_sums:
            if self.preconditioner != "none":
                logger.warning("Loss %s defines no curvature_sums; updates run without a preconditioner", loss.name)
            return None
        shipped = blocks.context.broadcast(theta)

        def block_curvature(block):
            keep = ~np.isnan(block.y)
            sums = loss.curvature_diagonal_sums if diagonal else loss.curvature_sums
            return sums(block.X[keep], block.y[keep], shipped.value), int(keep.sum())

        parts = blocks.map_collect(block_curvature)
        shipped.destroy()
        sums, count = np.sum([part[0] for part in parts], axis=0), sum(part[1] for part in parts)
        penalty = loss.penalty_curvature(theta.size)
        return sums / max(count, 1) + (penalty if diagonal else np.diag(penalty))

    def fit(self, df, *, test=None, reference=None, output_dir: str | None = None, overwrite: bool = False,
            table=None, checkpoint=None, max_records: int | None = None):
        """Run ActiveClean on a dirty Spark DataFrame and return an :class:`ActiveCleanResult`.

        ``test`` and ``reference`` are as in :meth:`prepare`; ``output_dir``,
        ``overwrite``, ``table``, ``checkpoint`` and ``max_records`` as in
        :meth:`run`.
        """
        checkpoints = _checkpoints(checkpoint, df.sparkSession)
        output = None
        if output_dir:
            # Checked before the relation is cached, so that a taken output directory fails fast.
            resuming = checkpoints is not None and checkpoints.latest() is not None
            output = OutputDirectory(output_dir, overwrite=overwrite, resume=resuming)
        prepared = self.prepare(df, test=test, reference=reference)
        try:
            return self.run(prepared, output=output, table=table, checkpoint=checkpoints, max_records=max_records)
        finally:
            prepared.release()

    def run(self, prepared: "PreparedData", *, output_dir: str | None = None, overwrite: bool = False, table=None,
            output=None, checkpoint=None, max_records: int | None = None):
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
            Replace the outputs of an earlier run in ``output_dir``.  A run
            that resumes from a checkpoint continues its outputs instead.
        table : pyspark.sql.DataFrame, optional
            Table written to ``output_dir`` with the cleaned values merged
            in; default the training relation.  Pass the whole input when
            part of it was held out for testing.
        checkpoint : str or Checkpoints, optional
            Directory (local, or any Hadoop filesystem URI) where the state
            is saved after every iteration.  When it already holds a
            checkpoint of this job, the run resumes from it.  A checkpoint
            of another job (other parameters or input) or a damaged one is an
            error, and the directory is left as it is.
        max_records : int, optional
            Stop once this call has cleaned at least this many records (whole
            batches), so that a scheduled job can spend its budget over
            several runs, each resuming from the checkpoint.
        """
        if max_records is not None:
            max_records = _positive_int("max_records", max_records)
        run = self._begin(prepared, output_dir=output_dir, overwrite=overwrite, output=output, checkpoint=checkpoint)
        store = run.loop.store
        first_size = store.size
        error = None
        try:
            while store.size < self.budget and not run.finished:
                if max_records is not None and store.size - first_size >= max_records:
                    logger.info("Cleaned %d records in this run, the limit per run; the next run resumes from "
                                "the checkpoint", store.size - first_size)
                    break
                update = self._iterate(run.t + 1, run.theta, run.loop)
                if update is None:
                    break
                self._advance(run, *update)
        except CleanerError as failure:
            error = failure
            logger.error("Cleaner failed at iteration %d: %s; saving the %d records cleaned so far", run.t + 1,
                         failure, store.size)
        finally:
            result = self._result(run, table=table)
        if error is not None:
            raise error
        logger.info("Finished: %d records cleaned in %d iterations, %.1f s", result.n_cleaned, len(run.history),
                    result.seconds)
        return result

    def _begin(self, prepared: "PreparedData", *, output_dir=None, overwrite=False, output=None,
               checkpoint=None) -> "_Run":
        """Start a run on prepared data, or resume it from the latest checkpoint in ``checkpoint``."""
        checkpoints = _checkpoints(checkpoint, prepared.df.sparkSession)
        fingerprint = self._fingerprint(prepared) if checkpoints is not None else None
        state = checkpoints.load(fingerprint) if checkpoints is not None else None
        if output is None and output_dir:
            output = OutputDirectory(output_dir, overwrite=overwrite, resume=state is not None)
        if output is not None and state is not None:
            output.keep_through(state.iteration)
        started = time.perf_counter() - prepared.seconds - (state.seconds if state is not None else 0.0)
        preconditioner = None
        if self.preconditioner != "none" and prepared.curvature is not None:
            preconditioner = Preconditioner(prepared.curvature, self.preconditioner)

        if self.sampling == "oracle" and prepared.reference_model is None:
            raise ValueError("sampling 'oracle' draws by the true clean gradients, so prepare() needs the reference table")
        key_type = prepared.schema.field(self.key).type
        journal = None
        if checkpoints is not None:
            def journal(t):
                return checkpoints.journal(t, prepared.schema, self.key)
        if state is None:
            store = CleanedStore(prepared.schema, prepared.featurizer.n_features, sparse=prepared.featurizer.sparse)
            loop = _Loop(prepared.blocks, prepared.featurizer, store, output, preconditioner, self.step.fresh(),
                         journal=journal)
            run = _Run(prepared, loop, prepared.dirty_model.theta.copy(), 0, [], None, started, checkpoints,
                       fingerprint, key_type)
            if checkpoints is not None:
                # Iteration 0 ties the directory to this job before any record reaches the cleaner.
                self.save_checkpoint(run)
        else:
            loop = self._restored_loop(state, prepared, output, preconditioner, journal)
            run = _Run(prepared, loop, state.theta, state.iteration, state.history, state.finished, started,
                       checkpoints, fingerprint, key_type)
            if run.finished:
                logger.info("The checkpoint's run finished at iteration %d (%s); writing its outputs again",
                            run.t, run.finished)
        return run

    def _advance(self, run: "_Run", theta, record) -> None:
        """Record the iteration that produced ``theta``: metrics, history, stop reason and checkpoint."""
        run.t = record["iteration"]
        run.theta = theta
        prepared = run.prepared
        if prepared.test_blocks is not None:
            record["test"] = evaluate_blocks(prepared.test_blocks, self.loss, theta)
        if prepared.reference_model is not None:
            record["model_error"] = _relative_error(theta, prepared.reference_model.theta)
        record["seconds"] = time.perf_counter() - run.started
        run.history.append(record)
        if run.loop.output:
            run.loop.output.append_history(record)
        logger.info(
            "iteration %d: %d cleaned, step norm %.3g%s%s, %.1f s",
            run.t, record["cleaned"], record["step_norm"], _format_metrics(record.get("test")),
            f", model error {record['model_error']:.4f}" if "model_error" in record else "", record["seconds"],
        )
        run.finished = self._stop_reason(record)
        if run.checkpoints is not None:
            self.save_checkpoint(run)

    def save_checkpoint(self, run: "_Run", checkpoints: Checkpoints | None = None) -> None:
        """Save the run's state to ``checkpoints``, by default the run's own."""
        seconds = run.history[-1]["seconds"] if run.history else 0.0
        state = self._state(run.t, run.theta, run.loop, run.history, run.finished, seconds)
        target = checkpoints if checkpoints is not None else run.checkpoints
        fingerprint = run.fingerprint if run.fingerprint is not None else self._fingerprint(run.prepared)
        run.fingerprint = fingerprint
        target.save(state, fingerprint, run.key_type)

    def _result(self, run: "_Run", *, table=None) -> ActiveCleanResult:
        """Return the run's result and write its outputs, when it has an output directory."""
        prepared, theta, store = run.prepared, run.theta, run.loop.store
        dirty_model, reference_model = prepared.dirty_model, prepared.reference_model
        history = run.history
        dirty_metrics = dirty_model.metrics.get("test", {})
        metrics = {"test": history[-1].get("test", {}) if history else dirty_metrics, "dirty_test": dirty_metrics}
        if reference_model is not None:
            theta_c = reference_model.theta
            metrics["clean_test"] = reference_model.metrics.get("test", {})
            metrics["model_error"] = _relative_error(theta, theta_c)
            metrics["dirty_model_error"] = _relative_error(dirty_model.theta, theta_c)
        metrics["records_cleaned"] = store.size
        output = run.loop.output
        result = ActiveCleanResult(
            model=ActiveCleanModel(theta, prepared.featurizer, self.loss, metrics),
            dirty_model=dirty_model,
            reference_model=reference_model,
            cleaned=store.rows,
            removed=store.removed,
            history=history,
            output_dir=output.path if output else None,
        )
        if output:
            self._write_outputs(output, prepared.df if table is None else table, result)
        result.seconds = time.perf_counter() - run.started
        return result

    def _plan(self, loop: "_Loop", batch_draws: int) -> ScoringPlan:
        """Return what the scoring pass needs besides theta: sampling, detector, estimator and audit size."""
        model = loop.detector_model
        # Trusted records exist when a rule leaves records unflagged or the detector certifies some.
        trusting = self.rule is not None or (model is not None and model.certify)
        n_audit = self.detector.audit_draws(batch_draws) if self.detector is not None and trusting else 0
        # The control variate uses the gradient sums over R_dirty, not the loss sums.
        return ScoringPlan(self.sampling, model, loop.changes, n_audit, loop.refits, dirty_losses=False)

    def _iterate(self, t, theta, loop: "_Loop"):
        """Run iteration t and return ``(new theta, history record)``, or None when R_dirty is empty."""
        drawn = self._draw(t, theta, loop)
        if drawn is None:
            return None
        return self._update(t, theta, loop, drawn)

    def _draw(self, t, theta, loop: "_Loop") -> "_Drawn | None":
        """Score the uncleaned records and draw the batch of iteration t, or return None when none is left."""
        store = loop.store
        clock = _Clock()
        batch_draws = min(self.batch_size, self.budget - store.size)
        plan = self._plan(loop, batch_draws)
        sc = loop.blocks.context
        shipped = sc.broadcast((theta, store.positions, plan))
        loss, seed, gradient_sum = self.loss, self.seed, self.control_variate
        empty = np.empty(0, dtype=np.int64)
        parts = loop.blocks.map_collect(
            lambda block: score_and_draw(
                block, loss, shipped.value[0], shipped.value[1].get(block.partition, empty), batch_draws, seed, t,
                gradient_sum=gradient_sum, plan=shipped.value[2],
            )
        )
        shipped.destroy()
        clock.lap("score")

        rng = random_generator(self.seed, t, DRIVER_STREAM)
        n_trusted = sum(p.n_trusted for p in parts)
        n_dirty_left = sum(p.n_dirty for p in parts)
        n_audit = plan.n_audit if n_trusted else 0
        if n_dirty_left == 0 and n_trusted and plan.n_audit:
            # The detector trusts every uncleaned record: the rest of the
            # budget audits them, which is where its mistakes would hide.
            n_audit = batch_draws
        if self.sampling == "uncertainty":
            draws, n_dirty = greedy_draws(parts, batch_draws - n_audit)
            score_total = 0.0
        else:
            draws, n_dirty, score_total = allocate_draws(parts, batch_draws - n_audit, self.floor, rng)
        audit = allocate_audit(parts, n_audit, rng)
        if not draws and not audit:
            logger.info("No dirty records left after %d cleaned", store.size)
            return None

        # Each distinct record is cleaned once and counted once per draw.
        by_record: dict = {}
        for draw in [*draws, *audit]:
            entry = by_record.setdefault((draw.partition, draw.position), [draw, 0])
            entry[1] += 1
        distinct = [entry[0] for entry in by_record.values()]
        counts = np.array([entry[1] for entry in by_record.values()], dtype=float)
        batch_records = {(d.partition, d.position) for d in draws}
        in_batch = np.array([(d.partition, d.position) in batch_records for d in distinct], dtype=bool)
        clock.lap("draw")
        # The candidates' rows came back with the scoring pass; this only gathers the drawn ones.
        candidates = {p.partition: p.candidates for p in parts}
        batch = pa.concat_tables([candidates[d.partition].slice(d.row, 1) for d in distinct])
        clock.lap("collect")
        return _Drawn(plan, parts, draws, audit, distinct, counts, in_batch, batch, n_dirty, score_total, clock)

    def _update(self, t, theta, loop: "_Loop", drawn: "_Drawn"):
        """Clean the drawn batch, update theta and return ``(new theta, history record)``."""
        store, clock, plan, parts = loop.store, drawn.clock, drawn.plan, drawn.parts
        distinct, counts, in_batch, batch = drawn.distinct, drawn.counts, drawn.in_batch, drawn.batch
        draws, n_dirty, score_total = drawn.draws, drawn.n_dirty, drawn.score_total
        n_trusted = sum(p.n_trusted for p in parts)
        probabilities = np.array([d.probability for d in distinct])
        audited = {(d.partition, d.position) for d in drawn.audit}
        journal = loop.journal(t) if loop.journal is not None else None
        cleaned_rows, removed, X, y, classes = self._clean(batch, t, distinct, counts, loop, audited, journal)
        X_dirty, y_dirty = loop.featurizer.transform(batch)
        clock.lap("clean")
        partitions = np.array([d.partition for d in distinct])
        positions = np.array([d.position for d in distinct], dtype=np.int64)

        # Horvitz-Thompson factor draws / (b p) of each batch record, for the weighted refit.
        factors = np.where(in_batch, counts / (max(len(draws), 1) * probabilities), 0.0)
        estimate = {}
        if self.update in STEP_UPDATES:
            models = (theta, *plan.candidates)
            start, step, estimate = self._sgd_step(t, models, loop, parts, (X, y, X_dirty, y_dirty), in_batch, counts,
                                                   probabilities, n_dirty, len(draws), clock)
            theta = models[start] - step
            store.add(partitions, positions, X, y, X_dirty, y_dirty, classes, cleaned_rows, removed, iteration=t,
                      inverse_probability=factors)
            if self.update == "sgd_refit":
                loop.refits = self._candidates(t, theta, loop)
        else:
            store.add(partitions, positions, X, y, X_dirty, y_dirty, classes, cleaned_rows, removed, iteration=t,
                      inverse_probability=factors)
            refitted = self._refit(theta, loop)
            step = refitted - theta
            theta = refitted
        self._learn(loop)
        clock.lap("update")

        record = {
            "iteration": t,
            "cleaned": store.size,
            "batch_draws": len(draws),
            "batch_records": int(in_batch.sum()),
            "removed": len(removed),
            "dirty_remaining": n_dirty - int(in_batch.sum()),
            "score_total": score_total,
            "step_size": loop.schedule(t) if self.update in STEP_UPDATES else None,
            "step_norm": float(np.linalg.norm(step)),
            **estimate,
            "timings": clock.laps,
        }
        if self.rule is not None or self.detector is not None:
            record["trusted"] = n_trusted - int((~in_batch).sum())
            record["audited"] = int((~in_batch).sum())
            record["audit_dirty"] = int(np.sum(classes[~in_batch] != CLEAN))
        detection = _detection(parts)
        if detection is not None:
            record["detection"] = detection
        model = loop.detector_model
        if model is not None:
            # The detector fitted after this batch, which the next iteration uses.
            record["detector"] = {"classes": model.classes, "certifying": model.certify, "missed": model.missed}
        return theta, record

    def _sgd_step(self, t, models, loop, parts, features, in_batch, counts, probabilities, n_dirty, n_draws, clock):
        """Return ``(start, step, record)`` for iteration t, before the batch joins R_clean.

        ``models`` are the SGD iterate and, with ``"sgd_refit"``, the refit.
        The batch gives an unbiased estimate of the mean clean loss at each,
        and the step is taken from the refit (``start`` = 1) only when its
        estimate is lower by more than ``START_MARGIN`` standard errors.
        The same batch then gives the gradient at that start.  It is
        unbiased given the start, but the choice itself depends on the batch.
        A second batch for the choice alone would double the cleaning cost.
        """
        X, y, X_dirty, y_dirty = (values[in_batch] for values in features)
        counts, probabilities = counts[in_batch], probabilities[in_batch]
        store = loop.store
        # R_clean is the records cleaned so far plus the trusted records,
        # whose sums come from the scoring pass.
        n_trusted = sum(p.n_trusted for p in parts)
        n_clean = store.size + n_trusted
        trusted = [p.trusted_sums for p in parts if p.trusted_sums is not None]
        trusted = np.sum(trusted, axis=0) if trusted else None
        dirty = np.sum([p.dirty_sums for p in parts], axis=0) if self.control_variate and n_dirty else None

        estimates, clean_losses, terms = [], [], []
        for k, theta in enumerate(models):
            if n_dirty == 0:
                g_batch = np.zeros(theta.size)  # R_dirty is empty, so only R_clean has weight
            elif dirty is not None:
                g_batch = controlled_batch_gradient(
                    self.loss, X, y, X_dirty, y_dirty, theta, counts, probabilities, n_dirty, n_draws, dirty[k, 1:]
                )
            else:
                g_batch = batch_gradient(self.loss, X, y, theta, counts, probabilities, n_dirty, n_draws)
            # The clean part's loss comes along with its gradient, for the choice of start.
            clock.lap("update")
            g_clean = clean_gradient(self.loss, store.X, store.y, theta, n_clean,
                                     None if trusted is None else trusted[k], value=True)
            clock.lap("clean_gradient")
            estimates.append(combined_gradient(g_batch, g_clean[1:], n_dirty, n_clean))
            clean_losses.append(g_clean[0])
            if len(models) > 1:
                terms.append(draw_losses(self.loss, X, y, theta, probabilities, n_dirty) if n_dirty else np.zeros(0))

        # The choice uses the plain importance-weighted loss, not the control
        # variate.  Far from the dirty model, the dirty loss that the control
        # variate subtracts is large and unrelated to the clean loss, so there
        # it adds variance instead of removing it.
        start, record = 0, {}
        if len(models) > 1:
            share = n_dirty / (n_dirty + n_clean)
            losses = [share * (counts @ term / n_draws if n_draws else 0.0) + (1 - share) * clean
                      for term, clean in zip(terms, clean_losses)]
            error = _difference_error(terms, counts, share)
            start = int(losses[1] - losses[0] + START_MARGIN * error < 0)
            record = {"estimated_loss": float(losses[start]), "start": CANDIDATES[start],
                      "estimated_losses": [float(loss) for loss in losses], "difference_error": error}
        direction = estimates[start]
        if loop.preconditioner is not None:
            direction = loop.preconditioner.solve(direction)
        return start, loop.schedule.step(t, direction), record

    def _candidates(self, t, theta, loop):
        """Return the refit of R_clean under :meth:`CleanedStore.sample_weights`, warm-started, as a 1-tuple."""
        store = loop.store
        weights = store.sample_weights(t)
        if not np.any((weights > 0) & ~np.isnan(store.y)):
            return ()  # every cleaned record so far was removed
        start = loop.refits[0] if loop.refits else theta
        return (fit_local(store.X, store.y, self.loss, start, weights=weights),)

    def _refit(self, theta, loop):
        """Refit theta on the cleaned records only, or on all records with the cleaned values written back."""
        store = loop.store
        if np.all(np.isnan(store.y)):
            return theta  # every cleaned record so far was removed
        if self.update == "retrain_cleaned":
            return fit_local(store.X, store.y, self.loss, theta)
        objective = block_objective(loop.blocks, self.loss, excluded=store.positions, extra=(store.X, store.y))
        return fit_lbfgs(objective, theta, tol=1e-5)

    def _learn(self, loop):
        """Refit the detector and the estimator's mean changes on the cleaned records."""
        store = loop.store
        if self.detector is not None:
            loop.detector_model = self.detector.fit(store.X_dirty, store.classes, loop.detector_model)
        if not self.estimator or store.size == 0:
            return
        if loop.detector_model is not None:
            names = loop.detector_model.classes
            classes = self.detector.pooled(store.classes)
        else:
            names = [POOLED]
            classes = np.full(store.size, POOLED, dtype=object)
        estimator = ChangeEstimator(loop.featurizer.n_features)
        estimator.update(classes, store.X_dirty, store.y_dirty, store.X, store.y)
        loop.changes = estimator.change_matrix(names)

    def _clean(self, batch, t, distinct, counts, loop: "_Loop", audited=frozenset(), journal=None):
        """Clean and featurize a batch, then append it to the audit trail.

        ``audited`` contains the ``(partition, position)`` of the trusted
        records drawn for the audit.  With a ``journal``, the records the
        cleaner returns are written to it at once, and the records it contains
        from a run that stopped in this iteration are not cleaned again.
        Returns ``(cleaned rows, removed keys, X, y, error classes)`` with X,
        y and the classes in batch order.
        """
        frame = batch.to_pandas()
        output = loop.output
        try:
            cleaned = self._call_cleaner(frame, journal)
            rows = validate_cleaned(frame, cleaned, self.key, batch.schema)
            X, y = self._features_of(batch, rows, list(cleaned.removed), loop.featurizer)
        except CleanerError as error:
            self._save_partial(error.partial, frame, t, distinct, counts, output)
            raise
        records = self._audit_records(frame, rows.to_pylist(), cleaned.removed, t, distinct, counts, applied=True)
        by_key = {record["key"]: record for record in records}
        ordered = [by_key[k] for k in frame[self.key].tolist()]
        operations = [cleaned.operations.get(record["key"]) for record in ordered]
        classes = error_classes(
            [record["changed_columns"] for record in ordered],
            [record["status"] == "removed" for record in ordered],
            [getattr(operation, "name", operation) for operation in operations],
        )
        for record, error_class, draw, operation in zip(ordered, classes, distinct, operations):
            record["error_class"] = error_class
            record["sample"] = "audit" if (draw.partition, draw.position) in audited else "batch"
            if hasattr(operation, "describe"):
                record["operation"] = operation.describe()
        # NOTE: the audit lines are synced before this iteration's update, so
        # after a kill the audit trail can hold one batch more than the history.
        if output:
            output.append_audit(records)
        if loop.audit is not None:
            loop.audit.extend(records)
        return rows, list(cleaned.removed), X, y, classes

    def _call_cleaner(self, frame, journal) -> CleanedBatch:
        """Return the cleaner's output for ``frame``, with the records the journal already contains taken from it."""
        if journal is None:
            return self.cleaner.clean(frame, self.key)
        earlier = journal.returned()
        todo = frame
        if earlier is not None:
            done = set(earlier.table[self.key].tolist()) | set(earlier.removed)
            todo = frame[~frame[self.key].isin(done)].reset_index(drop=True)
        per_record = getattr(self.cleaner, "reports_records", False)
        fresh = CleanedBatch(frame.iloc[:0])
        if len(todo):
            try:
                if per_record:
                    fresh = self.cleaner.clean(todo, self.key, returned=journal.record)
                else:
                    fresh = self.cleaner.clean(todo, self.key)
            except CleanerError as error:
                if not per_record:
                    journal.add(error.partial)
                if earlier is not None and error.partial is not None:
                    error.partial = _merged(earlier, error.partial)
                raise
            if not per_record:
                journal.add(fresh)
        return fresh if earlier is None else _merged(earlier, fresh)

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
        order = np.array([index.get(k, -1) for k in batch.column(self.key).to_pylist()], dtype=np.int64)
        y = np.full(order.size, np.nan)
        kept = order >= 0
        y[kept] = y_rows[order[kept]]
        return take_or_zero(X_rows, order), y

    def _stop_reason(self, record) -> str | None:
        """Return why the run stops after this iteration, or None to go on."""
        # With a learned detector, certified records can still be audited
        # after R_dirty is empty; the next scoring pass finds out.
        if record["dirty_remaining"] <= 0 and self.detector is None:
            return "no dirty records left"
        if self.tol > 0 and record["step_norm"] < self.tol:
            logger.info("Step norm %.3g fell below tol %.3g", record["step_norm"], self.tol)
            return "step norm below tol"
        if self.target is not None and "test" in record:
            metric = record["test"].get("accuracy", record["test"].get("rmse"))
            if metric is None:  # an empty test table has no metric to compare
                return None
            reached = metric >= self.target if self.loss.task == "classification" else metric <= self.target
            if reached:
                logger.info("Held-out metric %.4g reached the target %.4g", metric, self.target)
                return "target reached"
        return None

    # -- checkpoints --------------------------------------------------------

    def _fingerprint(self, prepared: "PreparedData") -> dict:
        """Describe the job for its checkpoint: the parameters that shape the run, and the input's content.

        The budget, tol and target may change between runs of one job, and
        the cleaner may be fixed after it failed, so they are left out.
        """
        def block_digest(block):
            sink = pa.BufferOutputStream()
            raw = block.raw.combine_chunks()
            with pa.ipc.new_stream(sink, raw.schema) as writer:
                writer.write_table(raw)
            return block.partition, block.size, hashlib.blake2b(sink.getvalue(), digest_size=20).hexdigest()

        parts = sorted(prepared.blocks.map_collect(block_digest))
        parameters = {name: describe(getattr(self, name)) for name in _PARAMETERS
                      if name not in ("budget", "tol", "target", "cleaner", "num_partitions")}
        parameters["featurizer"] = describe(prepared.featurizer)
        return {
            "parameters": parameters,
            "input": {
                "records": prepared.n_total,
                "partitions": len(parts),
                "records per partition": [size for _, size, _ in parts],
                "columns": [f"{f.name} {f.type}" for f in prepared.schema],
                "content digest": hashlib.blake2b("".join(d for _, _, d in parts).encode(), digest_size=20).hexdigest(),
            },
        }

    def _state(self, t, theta, loop: "_Loop", history, finished, seconds) -> RunState:
        model = loop.detector_model
        detector = None
        if model is not None:
            detector = {"classes": model.classes, "weights": model.weights, "threshold": model.threshold,
                        "certify": model.certify, "missed": model.missed}
        return RunState(
            iteration=t, theta=theta, store=loop.store.state(), history=history, refits=loop.refits,
            detector=detector, changes=loop.changes, squares=loop.schedule.squares, finished=finished,
            seconds=seconds,
        )

    def _restored_loop(self, state: RunState, prepared, output, preconditioner, journal) -> "_Loop":
        featurizer = prepared.featurizer
        store = CleanedStore.restore(state.store, prepared.schema, featurizer.n_features, sparse=featurizer.sparse)
        schedule = self.step.fresh()
        schedule.squares = state.squares
        loop = _Loop(prepared.blocks, featurizer, store, output, preconditioner, schedule, journal=journal)
        if state.detector is not None:
            saved = state.detector
            loop.detector_model = DetectorModel(saved["classes"], saved["weights"], saved["threshold"],
                                                saved["certify"])
            loop.detector_model.missed = saved["missed"]
        loop.changes = state.changes
        loop.refits = state.refits
        return loop

    def _reference_model(self, blocks, featurizer, test_blocks):
        """Train theta_c on the fully clean version of the training records."""
        objective = block_objective(blocks, self.loss, reference=True)
        theta_c = fit_lbfgs(objective, np.zeros(self.loss.n_parameters(featurizer.n_features)))
        metrics = evaluate_blocks(test_blocks, self.loss, theta_c) if test_blocks is not None else {}
        logger.info("Fully clean reference model trained%s", _format_metrics(metrics))
        return ActiveCleanModel(theta_c, featurizer, self.loss, {"test": metrics})

    def _write_outputs(self, output, df, result):
        result.model.save(output.path)
        result.dirty_model.save(output.file("dirty_model"))
        if result.reference_model is not None:
            result.reference_model.save(output.file("clean_model"))
        output.write_table(df, self.key, result.cleaned, result.removed)


# Largest block a partition should build by default.  Spark receives each
# block as one pickled object in one Java byte array, which holds at most
# 2 GB, so this leaves room for the estimate's error.
BLOCK_BYTES = 1 << 30


# Words assumed per text value when estimating the size of a sparse block.
TEXT_WORDS = 64


def _feature_bytes(features) -> int:
    """Estimate the bytes of one record's features, for a featurizer or a spec that is not fitted yet.

    Dense: 8 per feature (a spec counts its largest vocabularies).  Sparse:
    12 per non-zero entry (value and column index) and 8 for the row's offset.
    """
    sparse = features.is_sparse if isinstance(features, FeatureSpec) else features.sparse
    if sparse:
        entries = 2 * len(features.numeric) + len(features.categorical) + len(features.hashed)
        return 12 * (entries + TEXT_WORDS * len(features.text)) + 8
    if isinstance(features, Featurizer):
        return 8 * features.n_features
    return 8 * (2 * len(features.numeric) + len(features.categorical) * (features.max_categories + 2)
                + len(features.hashed) * (features.hash_buckets + 1) + len(features.text) * (features.text_buckets + 1))


def _row_bytes(schema, features, copies: int = 1) -> int:
    """Estimate the bytes of one record in a block: its values (numbers 8 bytes, others 32) and ``copies`` feature rows."""
    from pyspark.sql.types import BooleanType, NumericType

    raw = sum(8 if isinstance(f.dataType, (NumericType, BooleanType)) else 32 for f in schema.fields)
    return raw + copies * _feature_bytes(features)


class _Clock:
    """Seconds spent in each phase of an iteration; a phase entered twice adds up."""

    def __init__(self):
        self.laps: dict = {}
        self._last = time.perf_counter()

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.laps[phase] = self.laps.get(phase, 0.0) + now - self._last
        self._last = now


def _difference_error(terms, counts, share) -> float:
    """Return the standard error of the estimated clean-loss difference between two candidates.

    Only the batch part of the estimate is random: ``share`` times the mean
    over the draws of each draw's term difference (``counts`` draws per
    distinct record).  With fewer than two draws there is no spread to
    measure, and the error is 0.
    """
    n_draws = float(counts.sum()) if len(terms) == 2 else 0.0
    if n_draws < 2:
        return 0.0
    differences = terms[1] - terms[0]
    mean = counts @ differences / n_draws
    variance = counts @ (differences - mean) ** 2 / (n_draws - 1)
    return float(share * np.sqrt(variance / n_draws))


def _merged(first: CleanedBatch, second: CleanedBatch) -> CleanedBatch:
    """Return the records of two cleaner outputs for disjoint parts of one batch."""
    tables = [table for table in (first.table, second.table) if len(table)]
    table = pd.concat(tables, ignore_index=True) if tables else first.table
    return CleanedBatch(table, [*first.removed, *second.removed], {**first.operations, **second.operations})


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


def _flag_count(block) -> int:
    return block.size if block.flagged is None else int(block.flagged.sum())


def _rule_column(expression: str, df):
    """Return the Spark column of a rule expression, or raise ValueError naming the expression."""
    from pyspark.errors import PySparkException
    from pyspark.sql import functions as F
    from pyspark.sql.types import BooleanType

    try:
        column = F.expr(expression)
        data_type = df.select(column.alias(FLAG_COLUMN)).schema[FLAG_COLUMN].dataType
    except PySparkException as error:
        first_line = str(error).strip().splitlines()[0]
        raise ValueError(
            f"rule expression {expression!r} is not valid Spark SQL over the input columns {df.columns}: {first_line}"
        ) from None
    if not isinstance(data_type, BooleanType):
        raise ValueError(
            f"rule expression {expression!r} has type {data_type.simpleString()}, not boolean; write a condition "
            "that is true for possibly dirty records, for example \"price IS NULL OR price < 0\""
        )
    return column


def _rule_error(error: Exception) -> Exception:
    """Turn an executor's failure in a rule predicate into the ValueError it raised; keep other errors."""
    text = str(error)
    marker = "ValueError: rule predicate"
    if marker not in text:
        return error
    message = text[text.index(marker) + len("ValueError: "):].splitlines()[0]
    return ValueError(message)


def _detection(parts) -> dict | None:
    """Return the precision and recall of the dirty/trusted split over uncleaned records, when the truth is known."""
    if any(part.detection is None for part in parts):
        return None
    true_positive, false_positive, false_negative = (sum(values) for values in zip(*(p.detection for p in parts)))
    flagged, dirty = true_positive + false_positive, true_positive + false_negative
    return {
        "precision": true_positive / flagged if flagged else None,
        "recall": true_positive / dirty if dirty else None,
        "truly_dirty": int(dirty),
    }
