import numpy as np
import pytest

from activeclean_spark.estimator import ChangeEstimator
from activeclean_spark.losses import LeastSquaresLoss, LogisticLoss, Loss


def _records(seed=0, n=6, d=3):
    rng = np.random.default_rng(seed)
    X_dirty = rng.normal(size=(n, d))
    X_clean = X_dirty.copy()
    X_clean[:, 0] += 2.0
    y_dirty = np.zeros(n)
    y_clean = np.ones(n)
    return X_dirty, y_dirty, X_clean, y_clean


def test_mean_change_per_class():
    X_dirty, y_dirty, X_clean, y_clean = _records()
    classes = np.array(["unit", "unit", "unit", "typo", "typo", "typo"])
    X_clean[3:] = X_dirty[3:]
    y_clean[3:] = y_dirty[3:]
    estimator = ChangeEstimator(3)
    estimator.update(classes, X_dirty, y_dirty, X_clean, y_clean)
    dx, dy = estimator.mean_change("unit")
    np.testing.assert_allclose(dx, [2.0, 0.0, 0.0])
    assert dy == pytest.approx(1.0)
    dx, dy = estimator.mean_change("typo")
    np.testing.assert_allclose(dx, 0.0)
    assert dy == 0.0


def test_removed_records_and_unusable_labels_are_skipped():
    X_dirty, y_dirty, X_clean, y_clean = _records()
    X_clean[0, 0] += 100.0
    y_clean[0] = np.nan  # removed by the cleaner: its change must not count
    y_dirty[1] = np.nan  # unusable dirty label: no label change to learn
    y_clean[1] = 50.0
    estimator = ChangeEstimator(3)
    estimator.update(np.full(6, "c"), X_dirty, y_dirty, X_clean, y_clean)
    dx, dy = estimator.mean_change("c")
    np.testing.assert_allclose(dx, [2.0, 0.0, 0.0])
    assert dy == pytest.approx(1.0)


def test_unseen_class_gives_dirty_gradient():
    X_dirty, y_dirty, _, _ = _records()
    loss = LogisticLoss(reg=0.1)
    theta = np.array([0.5, -0.2, 0.1, 0.0])
    estimated = ChangeEstimator(3).estimated_gradients(loss, X_dirty, y_dirty, theta, np.full(6, "new"))
    np.testing.assert_allclose(estimated, loss.gradients(X_dirty, y_dirty, theta))


def test_estimate_is_exact_for_least_squares_feature_shift():
    # The first-order estimate of a least squares gradient misses only the
    # term (w . dx - dy) dx, which is zero for a shift orthogonal to w with
    # the label unchanged: the estimate is then exact.
    X_dirty, y_dirty, X_clean, _ = _records()
    y_clean = y_dirty.copy()
    loss = LeastSquaresLoss(reg=0.0)
    theta = np.array([0.0, 1.0, -1.0, 0.3])
    estimator = ChangeEstimator(3)
    estimator.update(np.full(6, "c"), X_dirty, y_dirty, X_clean, y_clean)
    estimated = estimator.estimated_gradients(loss, X_dirty, y_dirty, theta, np.full(6, "c"))
    np.testing.assert_allclose(estimated, loss.gradients(X_clean, y_clean, theta), atol=1e-12)


def test_dirty_attributes_limit_the_change():
    X_dirty, y_dirty, X_clean, y_clean = _records()
    loss = LeastSquaresLoss(reg=0.0)
    theta = np.array([1.0, 0.0, 0.0, 0.0])
    estimator = ChangeEstimator(3)
    estimator.update(np.full(6, "c"), X_dirty, y_dirty, X_clean, y_clean)
    nothing_dirty = np.zeros_like(X_dirty, dtype=bool)
    masked = estimator.estimated_gradients(loss, X_dirty, y_dirty, theta, np.full(6, "c"), nothing_dirty)
    only_label = loss.gradients(X_dirty, y_dirty, theta) + loss.gradient_changes(
        X_dirty, y_dirty, theta, np.zeros_like(X_dirty), np.ones(6)
    )
    np.testing.assert_allclose(masked, only_label)


def test_user_loss_falls_back_to_dirty_gradient():
    class Constant(Loss):
        def gradients(self, X, y, theta):
            return np.ones((X.shape[0], theta.size))

    X_dirty, y_dirty, X_clean, y_clean = _records()
    estimator = ChangeEstimator(3)
    estimator.update(np.full(6, "c"), X_dirty, y_dirty, X_clean, y_clean)
    estimated = estimator.estimated_gradients(Constant(), X_dirty, y_dirty, np.zeros(4), np.full(6, "c"))
    np.testing.assert_array_equal(estimated, 1.0)
