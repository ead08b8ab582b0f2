import numpy as np
import pyarrow as pa
import pytest

from activeclean_spark.blocks import Block
from activeclean_spark.losses import HingeLoss, LogisticLoss
from activeclean_spark.sampler import DRIVER_STREAM, allocate_draws, random_generator, score_and_draw


def _blocks(sizes=(30, 50), d=3, seed=0):
    rng = np.random.default_rng(seed)
    blocks, start = [], 0
    for index, size in enumerate(sizes):
        keys = np.arange(start, start + size)
        X = rng.normal(size=(size, d)) * rng.uniform(0.2, 3.0, size=(size, 1))
        y = (rng.random(size) < 0.5).astype(float)
        blocks.append(Block(index, keys, X, y, pa.table({"id": keys})))
        start += size
    return blocks


def _draw(blocks, loss, theta, excluded, batch, seed, iteration, floor):
    parts = [score_and_draw(b, loss, theta, excluded.get(b.partition, np.empty(0, np.int64)), batch, seed, iteration)
             for b in blocks]
    return allocate_draws(parts, batch, floor, random_generator(seed, iteration, DRIVER_STREAM))


def _exact_probabilities(blocks, loss, theta, excluded, floor):
    scores = np.concatenate([loss.gradient_norms(b.X, b.y, theta) for b in blocks])
    dirty = np.ones(scores.size, dtype=bool)
    offsets = np.cumsum([0] + [b.size for b in blocks])
    for partition, positions in excluded.items():
        dirty[offsets[partition] + positions] = False
    scores = np.where(dirty, scores, 0.0)
    n = dirty.sum()
    return np.where(dirty, (1 - floor) * scores / scores.sum() + floor / n, 0.0)


def test_draw_frequencies_match_probabilities():
    blocks = _blocks()
    loss = LogisticLoss(reg=0.1)
    theta = np.array([1.0, -2.0, 0.5, 0.2])
    excluded = {0: np.array([0, 5]), 1: np.array([7])}
    expected = _exact_probabilities(blocks, loss, theta, excluded, 0.2)
    counts = np.zeros(expected.size)
    reported = np.full(expected.size, np.nan)
    rounds, batch = 2000, 20
    for iteration in range(1, rounds + 1):
        draws, n_dirty, _ = _draw(blocks, loss, theta, excluded, batch, 7, iteration, 0.2)
        assert len(draws) == batch
        assert n_dirty == 77
        for draw in draws:
            counts[draw.key] += 1
            reported[draw.key] = draw.probability
    drawn = ~np.isnan(reported)
    np.testing.assert_allclose(reported[drawn], expected[drawn], rtol=1e-12)
    assert counts[expected == 0].sum() == 0
    # Each count is binomial(40000, p); 5 standard deviations bounds every
    # one of the 80 counts with a false alarm rate below 1e-4 in all.
    total = rounds * batch
    sd = np.sqrt(total * expected * (1 - expected))
    assert np.all(np.abs(counts - total * expected) <= 5 * sd + 1e-9)


def test_draws_are_reproducible_for_a_seed():
    blocks = _blocks()
    loss = LogisticLoss()
    theta = np.ones(4)
    first = _draw(blocks, loss, theta, {}, 10, 3, 4, 0.05)[0]
    second = _draw(blocks, loss, theta, {}, 10, 3, 4, 0.05)[0]
    assert [(d.partition, d.position) for d in first] == [(d.partition, d.position) for d in second]
    other = _draw(blocks, loss, theta, {}, 10, 4, 4, 0.05)[0]
    assert [(d.partition, d.position) for d in first] != [(d.partition, d.position) for d in other]


def test_zero_scores_fall_back_to_uniform():
    blocks = _blocks()
    loss = HingeLoss(reg=0.0)
    big = 100.0
    for block in blocks:
        block.X[:] = np.abs(block.X) + 1.0
        block.y[:] = 1.0
    theta = np.array([big, big, big, 0.0])
    draws, n_dirty, score_total = _draw(blocks, loss, theta, {}, 15, 0, 1, 0.05)
    assert score_total == 0.0
    assert len(draws) == 15
    assert all(d.probability == pytest.approx(1 / n_dirty) for d in draws)


def test_zero_score_records_stay_reachable():
    blocks = _blocks(sizes=(40,))
    loss = HingeLoss(reg=0.0)
    theta = np.array([5.0, 0.0, 0.0, 0.0])
    block = blocks[0]
    block.y[:] = (block.X[:, 0] > 0).astype(float)
    block.X[:, 0] = np.where(block.X[:, 0] > 0, 1.0, -1.0)
    block.X[0, 0], block.y[0] = 0.1, 1.0  # the only record inside the margin
    drawn = set()
    for iteration in range(1, 300):
        draws, _, _ = _draw(blocks, loss, theta, {}, 5, 1, iteration, 0.5)
        drawn.update(d.key for d in draws)
    assert drawn == set(range(40))


def test_unusable_labels_get_zero_score():
    blocks = _blocks(sizes=(10,))
    blocks[0].y[:5] = np.nan
    part = score_and_draw(blocks[0], LogisticLoss(), np.ones(4), np.empty(0, np.int64), 200, 0, 1)
    assert np.all(part.weighted < 10)
    assert not np.isin(part.weighted, np.arange(5)).any()


def test_empty_relation_draws_nothing():
    blocks = _blocks(sizes=(3,))
    draws, n_dirty, _ = _draw(blocks, LogisticLoss(), np.ones(4), {0: np.arange(3)}, 5, 0, 1, 0.05)
    assert draws == []
    assert n_dirty == 0
