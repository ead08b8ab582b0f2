import numpy as np
import pyarrow as pa

from activeclean_spark.losses import LogisticLoss
from activeclean_spark.optimize import local_objective
from activeclean_spark.store import CleanedStore


def _add(store, keys, values, iteration, factors):
    n = keys.size
    store.add(np.zeros(n, dtype=np.int64), keys, values[:, None], values, values[:, None], values,
              np.full(n, "clean", dtype=object), pa.schema([]).empty_table(), [], iteration=iteration,
              inverse_probability=factors)


def test_sample_weights_add_later_batches():
    store = CleanedStore(pa.schema([]), 1)
    _add(store, np.array([0, 1]), np.ones(2), 1, np.array([2.0, 0.0]))
    _add(store, np.array([2]), np.ones(1), 2, np.array([5.0]))
    np.testing.assert_allclose(store.sample_weights(3), [2.0 + 2, 0.0 + 2, 5.0 + 1])


def test_weighted_sample_estimates_the_total_without_bias():
    """Sequential importance sampling, averaged over batches, sums to the total in expectation."""
    rng = np.random.default_rng(5)
    n, batch, batches, rounds, floor = 60, 4, 5, 4000, 0.1
    values = rng.gamma(2.0, size=n)  # any per-record quantity, e.g. a clean loss at a fixed theta
    scores = values * rng.uniform(0.2, 1.0, size=n)  # scores correlated with it, as gradient norms are
    estimates = np.empty(rounds)
    for r in range(rounds):
        store = CleanedStore(pa.schema([]), 1)
        dirty = np.ones(n, dtype=bool)
        for t in range(1, batches + 1):
            rows = np.flatnonzero(dirty)
            p = (1 - floor) * scores[rows] / scores[rows].sum() + floor / rows.size
            drawn = rng.choice(rows.size, size=batch, p=p)
            picked, counts = np.unique(drawn, return_counts=True)
            keys = rows[picked]
            _add(store, keys, values[keys], t, counts / (batch * p[picked]))
            dirty[keys] = False
        weights = store.sample_weights(batches)
        estimates[r] = weights @ store.y / batches

    # Standard error of the mean of 4000 rounds; 5 of them fail by chance
    # about once in 10^6 runs, while dropping the (T - s) term misses the
    # total by about a fifth here, over 100 standard errors.
    standard_error = estimates.std() / np.sqrt(rounds)
    assert abs(estimates.mean() - values.sum()) <= 5 * standard_error


def test_weighted_local_objective_is_a_weighted_mean():
    loss = LogisticLoss(reg=0.0)
    X = np.array([[0.0], [1.0], [2.0]])
    y = np.array([0.0, 1.0, np.nan])
    theta = np.array([0.5, -0.2])
    value, grad = local_objective(X, y, loss, np.array([3.0, 1.0, 9.0]))(theta)
    expected = (3 * loss.losses(X[:1], y[:1], theta)[0] + loss.losses(X[1:2], y[1:2], theta)[0]) / 4
    assert np.isclose(value, expected)
    np.testing.assert_allclose(grad, (3 * loss.gradients(X[:1], y[:1], theta)[0]
                                      + loss.gradients(X[1:2], y[1:2], theta)[0]) / 4)
