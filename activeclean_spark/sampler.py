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

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

__all__ = ["PartitionDraw", "score_and_draw", "allocate_draws", "Draw", "DEFAULT_FLOOR", "random_generator", "DRIVER_STREAM"]

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


@dataclass
class PartitionDraw:
    """Scores, totals and candidate draws of one partition's scoring pass."""

    partition: int
    n_dirty: int
    score_total: float
    weighted: np.ndarray  # local positions drawn in proportion to the score
    weighted_scores: np.ndarray
    uniform: np.ndarray  # local positions drawn uniformly from the dirty records
    uniform_scores: np.ndarray
    candidates: pa.Table  # raw rows of weighted then uniform candidates
    keys: np.ndarray
    dirty_gradient_sum: np.ndarray | None = None  # over R_dirty, for the control variate


@dataclass
class Draw:
    """One record of a batch with the probability it was drawn with."""

    partition: int
    position: int
    key: object
    probability: float
    row: int  # row of the record in its partition's candidate table


def _scores(block, loss, theta: np.ndarray, excluded: np.ndarray) -> np.ndarray:
    scores = np.zeros(block.size)
    usable = ~np.isnan(block.y)
    if usable.all():
        scores = loss.gradient_norms(block.X, block.y, theta)
    elif usable.any():
        scores[usable] = loss.gradient_norms(block.X[usable], block.y[usable], theta)
    scores[~np.isfinite(scores)] = 0.0
    scores[excluded] = 0.0
    return scores


def _dirty_gradient_sum(block, loss, theta, excluded) -> np.ndarray:
    """Sum of the dirty gradients over the block's R_dirty; unusable labels count as zero."""
    usable = ~np.isnan(block.y)
    total = np.zeros(theta.size)
    if usable.all():
        total += loss.loss_and_gradient_sums(block.X, block.y, theta)[1]
    elif usable.any():
        total += loss.loss_and_gradient_sums(block.X[usable], block.y[usable], theta)[1]
    # Subtracting R_clean's rows gathers only |R_clean| rows instead of
    # copying the whole block through a mask.
    cleaned = excluded[usable[excluded]]
    if cleaned.size:
        total -= loss.loss_and_gradient_sums(block.X[cleaned], block.y[cleaned], theta)[1]
    return total


def score_and_draw(
    block, loss, theta, excluded, n_candidates: int, seed: int, iteration: int, *, gradient_sum: bool = False
) -> PartitionDraw:
    """Score a block's dirty records and draw candidates from both mixture components.

    ``excluded`` contains the local positions of records already in R_clean.
    With ``gradient_sum``, the pass also sums the dirty gradients over
    R_dirty for the control variate.
    """
    rng = random_generator(seed, iteration, EXECUTOR_STREAM, block.partition)
    scores = _scores(block, loss, theta, excluded)
    n_dirty = block.size - excluded.size
    weighted = np.empty(0, dtype=np.int64)
    uniform = np.empty(0, dtype=np.int64)

    if n_dirty > 0:
        cumulative = np.cumsum(scores)
        total = float(cumulative[-1])
        if total > 0:
            targets = rng.random(n_candidates) * total
            weighted = np.minimum(np.searchsorted(cumulative, targets, side="right"), block.size - 1)
        dirty = np.ones(block.size, dtype=bool)
        dirty[excluded] = False
        uniform = np.flatnonzero(dirty)[rng.integers(0, n_dirty, n_candidates)]

    positions = np.concatenate([weighted, uniform])
    return PartitionDraw(
        partition=block.partition,
        n_dirty=n_dirty,
        score_total=float(scores.sum()),
        weighted=weighted,
        weighted_scores=scores[weighted],
        uniform=uniform,
        uniform_scores=scores[uniform],
        candidates=block.raw.take(pa.array(positions, pa.int64())),
        keys=block.keys[positions],
        dirty_gradient_sum=_dirty_gradient_sum(block, loss, theta, excluded) if gradient_sum else None,
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
