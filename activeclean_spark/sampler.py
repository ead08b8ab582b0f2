"""Importance sampling of dirty records with exactly known draw probabilities.

A batch is ``b`` i.i.d. draws, with replacement, from

    p_i = (1 - eps) * s_i / S + eps / n,        S = sum of s_i over R_dirty

where ``s_i`` is record i's gradient-norm score and ``n = |R_dirty|``.  The
distribution is a mixture, so one draw picks the score-proportional component
with probability ``1 - eps`` and the uniform one otherwise.  Each component
is sampled in two stages: a partition in proportion to its score total (or
its dirty count), then a record inside it.  The second stage needs only
partition-local numbers.  So one Spark job computes the scores, the partition
totals and ``b`` candidate draws per component in every partition.  The
driver then allocates the draws to partitions and keeps the first ``m_p``
candidates of each.  Candidates are i.i.d. and the allocation is independent
of them, so the kept draws have exactly the probabilities ``p_i``.

Every random number is seeded from ``(seed, iteration, partition)``, so a
task retried by Spark draws the same candidates.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from .losses import LinearModelLoss
from .updater import value_and_gradient_sums

__all__ = [
    "PartitionDraw", "ScoringPlan", "SAMPLINGS", "score_and_draw", "allocate_draws", "allocate_audit", "greedy_draws",
    "Draw", "DEFAULT_FLOOR", "random_generator", "DRIVER_STREAM",
]

# Share of the draw probability spread uniformly over R_dirty.  A record with
# a zero score (an SVM record outside the margin, a record with an unusable
# label) still has probability at least eps / n, so the importance weights
# 1 / (n p_i) stay bounded by 1 / eps.
DEFAULT_FLOOR = 0.05


# Streams of random numbers; the driver's allocation and each partition's
# candidates must be independent of one another for the draw to be exact.
EXECUTOR_STREAM = 1
DRIVER_STREAM = 2


def random_generator(seed: int, iteration: int, stream: int, partition: int = 0) -> np.random.Generator:
    """Return the generator for one (seed, iteration, stream, partition).

    The key has a fixed length on purpose: numpy's SeedSequence reads its
    entropy as one large integer, so ``[s, t]`` and ``[s, t, 0]`` would seed
    the same stream and correlate the driver with partition 0.
    """
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(iteration, stream, partition)))


SAMPLINGS = ("importance", "uniform", "oracle", "uncertainty")


@dataclass
class ScoringPlan:
    """Settings of the scoring pass besides theta, shipped to the executors with the model.

    ``sampling`` is ``"importance"`` (norm of the estimated clean gradient),
    ``"uniform"``, ``"oracle"`` (norm of the true clean gradient, from the
    reference features) or ``"uncertainty"`` (the records closest to the
    decision boundary, drawn greedily rather than at random).  ``detector``
    is a fitted :class:`~activeclean_spark.detector.DetectorModel` and
    ``changes`` the estimator's mean change per detector class, ``(dX, dy)``
    with one row per class (one row in all when there is no detector).
    ``n_audit`` candidates are drawn uniformly from the trusted records.
    ``candidates`` are further models at which the pass also sums the loss
    and gradient over R_dirty and over the trusted records.  Without
    ``dirty_losses``, the loss sums over R_dirty may be NaN (the control
    variate needs only the gradient sums), which saves a loss evaluation
    per record.
    """

    sampling: str = "importance"
    detector: object = None
    changes: tuple | None = None
    n_audit: int = 0
    candidates: tuple = ()
    dirty_losses: bool = True


@dataclass
class PartitionDraw:
    """Scores, totals and candidate draws of one partition's scoring pass.

    Trusted records are in R_clean without having been cleaned: those a
    rule does not flag and those the detector certifies clean.  Row k of
    ``dirty_sums`` and ``trusted_sums`` is ``[loss sum, gradient sum]`` at
    theta (k = 0) and at the plan's candidate models (k >= 1).
    """

    partition: int
    n_dirty: int
    score_total: float
    weighted: np.ndarray  # local positions drawn in proportion to the score
    weighted_scores: np.ndarray
    uniform: np.ndarray  # local positions drawn uniformly from the dirty records
    uniform_scores: np.ndarray
    candidates: pa.Table  # raw rows of weighted, uniform, then audit candidates
    keys: np.ndarray
    dirty_sums: np.ndarray | None = None  # over R_dirty, for the control variate
    n_trusted: int = 0
    trusted_sums: np.ndarray | None = None
    audit: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))  # uniform over trusted records
    detection: tuple | None = None  # (true positives, false positives, false negatives) when the truth is known

    @property
    def dirty_gradient_sum(self) -> np.ndarray | None:
        """Gradient sum over R_dirty at theta."""
        return None if self.dirty_sums is None else self.dirty_sums[0, 1:]

    @property
    def trusted_gradient_sum(self) -> np.ndarray | None:
        """Gradient sum over the trusted records at theta."""
        return None if self.trusted_sums is None else self.trusted_sums[0, 1:]


@dataclass
class Draw:
    """One record of a batch with the probability it was drawn with."""

    partition: int
    position: int
    key: object
    probability: float
    row: int  # row of the record in its partition's candidate table


def _norms(loss, X, y, theta) -> np.ndarray:
    scores = np.zeros(X.shape[0])
    usable = ~np.isnan(y)
    if usable.any():
        scores[usable] = loss.gradient_norms(X[usable], y[usable], theta)
    return scores


def estimated_norms(loss, X, y, theta, changes, probabilities) -> np.ndarray:
    """Norms of g_hat = dirty gradient + the change that cleaning is expected to bring.

    The expected change of a record is the mix of the classes' mean changes,
    weighted by the detector's class probabilities (one class in all
    without a detector).  The gradient change is linear in it, and
    :meth:`LinearModelLoss.estimated_norms` gives the norms in closed form.
    """
    usable = ~np.isnan(y)
    scores = np.zeros(X.shape[0])
    if not usable.any():
        return scores
    X, y = X[usable], y[usable]
    if changes is None or not isinstance(loss, LinearModelLoss):
        scores[usable] = loss.gradient_norms(X, y, theta)
        return scores
    dX_classes, dy_classes = changes
    if probabilities is None:
        mix, dX_classes, dy_classes = np.ones((X.shape[0], 1)), dX_classes[:1], dy_classes[:1]
    else:
        mix = probabilities[usable]
    scores[usable] = loss.estimated_norms(X, y, theta, mix, dX_classes, dy_classes)
    return scores


def _linear_pass(block, loss, models, dirty, trusted, scored, dirty_losses=True):
    """Sums and scores of a linear-model loss over a whole block.

    Returns ``(dirty sums, trusted sums, scores)``.  The sums are the
    ``[loss sum, gradient sum]`` of every model over the records of each
    mask, or None for a mask that is None.  The scores are the gradient
    norms at the first model of the records in ``scored``, and 0 elsewhere.
    Without ``dirty_losses`` the dirty loss sums are NaN.
    Records with an unusable label count in no sum and score 0.
    """
    usable, X, y = block.usable, block.X, block.filled_y
    masks = [mask & usable for mask in (dirty, trusted) if mask is not None]
    thetas = np.stack(models)
    # One product gives the margins of every model.
    margins = loss.margins(X, thetas.T)
    derivatives = loss.margin_derivatives(margins, y[:, None])
    scores = np.zeros(block.size)
    if scored is not None:
        keep = scored & usable
        norms = loss.norms_from_margins(margins[:, 0], derivatives[:, 0], block.row_squares, thetas[0])
        scores[keep] = norms[keep]
    sums = None
    if masks:
        weights = np.stack(masks, axis=1).astype(float)
        with_loss = [dirty_losses] * (dirty is not None) + [True] * (trusted is not None)
        sums = loss.masked_sums(X, y, thetas, weights, margins, derivatives, with_loss)  # (mask, model, 1 + p)
    dirty_sums = sums[0] if dirty is not None else None
    trusted_sums = sums[-1] if trusted is not None else None
    return dirty_sums, trusted_sums, scores


def _uncertainty(loss, X, theta) -> np.ndarray:
    """Return minus the distance to the decision boundary, so the largest is the least certain."""
    if not hasattr(loss, "margins") or loss.task != "classification":
        raise ValueError(f"uncertainty sampling needs a linear classification loss, not {loss.name!r}")
    return -np.abs(loss.margins(X, theta))


def score_and_draw(
    block, loss, theta, excluded, n_candidates: int, seed: int, iteration: int, *, gradient_sum: bool = False,
    plan: ScoringPlan | None = None,
) -> PartitionDraw:
    """Score a block's dirty records and draw candidates from both mixture components.

    ``excluded`` contains the local positions of the records cleaned so far.
    With ``gradient_sum``, the pass also sums the dirty losses and
    gradients over R_dirty for the control variate.
    """
    plan = plan or ScoringPlan()
    rng = random_generator(seed, iteration, EXECUTOR_STREAM, block.partition)
    dirty = np.ones(block.size, dtype=bool)
    dirty[excluded] = False
    trusted = np.zeros(block.size, dtype=bool)
    if block.flagged is not None:
        trusted = dirty & ~block.flagged
        dirty &= block.flagged

    probabilities = None
    if plan.detector is not None and dirty.any():
        rows = np.flatnonzero(dirty)
        probabilities = plan.detector.probabilities(block.X[rows])
        certified = plan.detector.certified(block.X[rows], probabilities)
        trusted[rows[certified]] = True
        dirty[rows[certified]] = False
        probabilities = probabilities[~certified]
    rows = np.flatnonzero(dirty)
    models = (theta, *plan.candidates)
    fused = isinstance(loss, LinearModelLoss)
    if fused:
        # Linear models: one matrix-vector product per model over the whole
        # block gives the scores and every sum, and no row subset of X is copied.
        dirty_sums, trusted_sums, scores = _linear_pass(
            block, loss, models, dirty if gradient_sum else None, trusted if trusted.any() else None,
            dirty if plan.sampling == "importance" and plan.changes is None else None, plan.dirty_losses,
        )
    if not fused or plan.sampling != "importance" or plan.changes is not None:
        # Without exclusions every row is dirty, and the block's arrays are used without a copy.
        X, y = (block.X, block.y) if rows.size == block.size else (block.X[rows], block.y[rows])
        scores = np.zeros(block.size)
        if plan.sampling == "importance":
            scores[rows] = estimated_norms(loss, X, y, theta, plan.changes, probabilities)
        elif plan.sampling == "oracle":
            scores[rows] = _norms(loss, block.X_reference[rows], block.y_reference[rows], theta)
        elif plan.sampling == "uncertainty":
            scores[rows] = _uncertainty(loss, X, theta)
    if not fused:
        dirty_sums = np.array([value_and_gradient_sums(loss, X, y, m) for m in models]) if gradient_sum else None
        trusted_rows = np.flatnonzero(trusted)
        trusted_sums = (
            np.array([value_and_gradient_sums(loss, block.X[trusted_rows], block.y[trusted_rows], m) for m in models])
            if trusted_rows.size else None
        )
    scores[~np.isfinite(scores)] = 0.0
    n_dirty = rows.size
    weighted = np.empty(0, dtype=np.int64)
    uniform = np.empty(0, dtype=np.int64)

    if n_dirty > 0:
        if plan.sampling == "uncertainty":
            # Greedy: the n_candidates least certain records, most uncertain first.
            order = np.argsort(-scores[rows], kind="stable")[:n_candidates]
            weighted = rows[order]
        else:
            cumulative = np.cumsum(scores)
            total = float(cumulative[-1])
            if total > 0:
                targets = rng.random(n_candidates) * total
                weighted = np.minimum(np.searchsorted(cumulative, targets, side="right"), block.size - 1)
            uniform = rows[rng.integers(0, n_dirty, n_candidates)]

    trusted_rows = np.flatnonzero(trusted)
    audit = np.empty(0, dtype=np.int64)
    if plan.n_audit and trusted_rows.size:
        # A full batch of candidates, because the driver audits a whole
        # batch once the detector trusts every uncleaned record.
        audit = trusted_rows[rng.integers(0, trusted_rows.size, max(plan.n_audit, n_candidates))]

    detection = None
    if block.truly_dirty is not None:
        truth = block.truly_dirty
        detection = (int(np.sum(dirty & truth)), int(np.sum(dirty & ~truth)), int(np.sum(trusted & truth)))

    positions = np.concatenate([weighted, uniform, audit])
    score_total = 0.0 if plan.sampling == "uncertainty" else float(scores[rows].sum())
    return PartitionDraw(
        partition=block.partition,
        n_dirty=n_dirty,
        score_total=score_total,
        weighted=weighted,
        weighted_scores=scores[weighted],
        uniform=uniform,
        uniform_scores=scores[uniform],
        candidates=block.raw.take(pa.array(positions, pa.int64())),
        keys=block.keys[positions],
        dirty_sums=dirty_sums,
        n_trusted=int(trusted_rows.size),
        trusted_sums=trusted_sums,
        audit=audit,
        detection=detection,
    )


def allocate_draws(parts: list[PartitionDraw], batch_size: int, floor: float, rng: np.random.Generator):
    """Allocate ``batch_size`` draws to partitions and return them as :class:`Draw` objects.

    Returns ``(draws, n_dirty, score_total)``.
    """
    n_dirty = sum(p.n_dirty for p in parts)
    score_total = float(sum(p.score_total for p in parts))
    if n_dirty == 0:
        return [], 0, 0.0

    weighted_share = 1.0 - floor if score_total > 0 and np.isfinite(score_total) else 0.0
    n_weighted = int(rng.binomial(batch_size, weighted_share))
    weighted_counts = np.zeros(len(parts), dtype=np.int64)
    if n_weighted:
        weighted_counts = rng.multinomial(n_weighted, [p.score_total / score_total for p in parts])
    uniform_counts = rng.multinomial(batch_size - n_weighted, [p.n_dirty / n_dirty for p in parts])

    def probability(score: float) -> float:
        if weighted_share == 0.0:
            return 1.0 / n_dirty
        return (1.0 - floor) * score / score_total + floor / n_dirty

    draws = []
    for part, m_weighted, m_uniform in zip(parts, weighted_counts, uniform_counts):
        offset = len(part.weighted)
        chosen = [(i, part.weighted[i], part.weighted_scores[i]) for i in range(m_weighted)]
        chosen += [(offset + i, part.uniform[i], part.uniform_scores[i]) for i in range(m_uniform)]
        for row, position, score in chosen:
            draws.append(Draw(part.partition, int(position), part.keys[row], probability(score), row))
    return draws, n_dirty, score_total


def allocate_audit(parts: list[PartitionDraw], n_audit: int, rng: np.random.Generator) -> list[Draw]:
    """Draw ``n_audit`` records uniformly from the trusted records of all partitions."""
    n_trusted = sum(p.n_trusted for p in parts)
    if n_audit == 0 or n_trusted == 0:
        return []
    counts = rng.multinomial(n_audit, [p.n_trusted / n_trusted for p in parts])
    draws = []
    for part, count in zip(parts, counts):
        offset = len(part.weighted) + len(part.uniform)
        for i in range(count):
            draws.append(Draw(part.partition, int(part.audit[i]), part.keys[offset + i], 1.0 / n_trusted, offset + i))
    return draws


def greedy_draws(parts: list[PartitionDraw], batch_size: int) -> tuple[list[Draw], int]:
    """Return the ``batch_size`` highest-scoring candidates of all partitions, and |R_dirty|.

    Greedy selection has no draw probability; each draw carries ``1 / n``
    only as a placeholder, and the update that follows must not weight by it.
    """
    n_dirty = sum(p.n_dirty for p in parts)
    ranked = sorted(
        ((score, part.partition, i) for part in parts for i, score in enumerate(part.weighted_scores)),
        key=lambda item: -item[0],
    )[:batch_size]
    by_partition = {p.partition: p for p in parts}
    draws = [
        Draw(partition, int(by_partition[partition].weighted[i]), by_partition[partition].keys[i], 1.0 / n_dirty, i)
        for _, partition, i in ranked
    ]
    return draws, n_dirty
