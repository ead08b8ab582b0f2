"""Blocks shared through executor-local files, and the fused linear-model scoring pass."""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pytest

from activeclean_spark import blocks as blocks_module
from activeclean_spark.blocks import Block, BlockSet
from activeclean_spark.losses import HingeLoss, HuberLoss, LeastSquaresLoss, LogisticLoss, Loss
from activeclean_spark.sampler import ScoringPlan, score_and_draw


def _block(partition, size, d=3, seed=0, flagged=False):
    rng = np.random.default_rng(seed + partition)
    keys = np.arange(size) + 1000 * partition
    X = rng.normal(size=(size, d))
    y = (rng.random(size) < 0.5).astype(float)
    y[::7] = np.nan  # unusable labels count in no sum
    block = Block(partition, keys, X, y, pa.table({"id": keys}))
    if flagged:
        block.flagged = rng.random(size) < 0.6
    return block


@pytest.fixture
def block_set(spark):
    sc = spark.sparkContext
    sizes = {0: 40, 1: 25, 2: 0}
    rdd = sc.parallelize(range(3), 3).mapPartitionsWithIndex(lambda i, _: [_block(i, sizes[i])])
    blocks = BlockSet(rdd)
    yield blocks
    blocks.unpersist()


def test_map_collect_keeps_partition_order(block_set):
    expected = [(b.partition, b.size, float(np.nansum(b.y))) for b in block_set.rdd.collect()]
    for _ in range(3):
        assert block_set.map_collect(lambda b: (b.partition, b.size, float(np.nansum(b.y)))) == expected


def test_missing_files_fall_back_to_cache(block_set):
    expected = block_set.map_collect(lambda b: float(np.nansum(b.X)))
    # A token with no files: every partition misses, as on a new executor.
    block_set.token = "unwritten"
    missed = block_set.missed
    assert block_set.map_collect(lambda b: float(np.nansum(b.X))) == expected
    assert block_set.missed == missed + block_set.num_partitions
    # The misses wrote the files, so the next pass finds every block.
    assert block_set.map_collect(lambda b: float(np.nansum(b.X))) == expected
    assert block_set.missed == missed + block_set.num_partitions


def test_blocks_from_files_equal_the_cached_ones(block_set):
    def fields(block):
        return (block.keys.tolist(), block.X.tolist(), np.nan_to_num(block.y, nan=-1).tolist(),
                block.raw.to_pydict(), type(block.X).__name__)

    from_files = block_set.map_collect(fields)
    block_set.shared = False
    assert block_set.map_collect(fields) == from_files
    assert {f[-1] for f in from_files} == {"ndarray"}


def test_unpersist_removes_the_block_files(spark, block_set):
    block_set.map_collect(lambda b: b.size)
    token, partitions = block_set.token, block_set.num_partitions
    sc = spark.sparkContext

    def files_left():
        check = lambda _: any(os.path.isdir(blocks_module._block_path(token, p)) for p in range(partitions))
        return any(sc.parallelize(range(2), 2).map(check).collect())

    assert files_left()
    block_set.unpersist()
    assert not files_left()


class _Opaque(Loss):
    """The same loss as a linear one, hidden from the fused pass."""

    def __init__(self, inner):
        self.inner = inner
        self.name, self.task = inner.name, inner.task

    def n_parameters(self, n_features):
        return self.inner.n_parameters(n_features)

    def losses(self, X, y, theta):
        return self.inner.losses(X, y, theta)

    def gradients(self, X, y, theta):
        return self.inner.gradients(X, y, theta)

    def gradient_norms(self, X, y, theta):
        return self.inner.gradient_norms(X, y, theta)

    def loss_and_gradient_sums(self, X, y, theta):
        return self.inner.loss_and_gradient_sums(X, y, theta)


@pytest.mark.parametrize("loss", [LogisticLoss(0.1), HingeLoss(0.1), LeastSquaresLoss(0.1), HuberLoss(0.1)],
                         ids=lambda loss: loss.name)
def test_fused_pass_equals_the_generic_one(loss):
    block = _block(0, 60, flagged=True)
    theta = np.array([0.5, -1.0, 0.2, 0.3])
    plan = ScoringPlan(candidates=(theta * 0.5,))
    excluded = np.array([1, 5, 8])
    fused = score_and_draw(block, loss, theta, excluded, 10, 0, 1, gradient_sum=True, plan=plan)
    generic = score_and_draw(block, _Opaque(loss), theta, excluded, 10, 0, 1, gradient_sum=True, plan=plan)
    assert fused.score_total == pytest.approx(generic.score_total, rel=1e-12)
    np.testing.assert_array_equal(fused.weighted, generic.weighted)
    np.testing.assert_allclose(fused.dirty_sums, generic.dirty_sums, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(fused.trusted_sums, generic.trusted_sums, rtol=1e-10, atol=1e-12)


def test_dirty_loss_sums_can_be_left_out():
    block, loss = _block(0, 60, flagged=True), LogisticLoss(0.1)
    theta = np.array([0.5, -1.0, 0.2, 0.3])
    full = score_and_draw(block, loss, theta, np.array([2]), 10, 0, 1, gradient_sum=True)
    lean = score_and_draw(block, loss, theta, np.array([2]), 10, 0, 1, gradient_sum=True,
                          plan=ScoringPlan(dirty_losses=False))
    assert np.isnan(lean.dirty_sums[:, 0]).all()
    np.testing.assert_array_equal(lean.dirty_sums[:, 1:], full.dirty_sums[:, 1:])
    np.testing.assert_array_equal(lean.trusted_sums, full.trusted_sums)
