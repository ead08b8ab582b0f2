import numpy as np
import pytest

from activeclean_spark.losses import HingeLoss, HuberLoss, LeastSquaresLoss, LogisticLoss, make_loss

LOSSES = [LeastSquaresLoss(reg=0.1), LogisticLoss(reg=0.1), HingeLoss(reg=0.1), HuberLoss(reg=0.1, delta=0.7)]


def _data(loss, n=40, d=5, seed=1):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    theta = rng.normal(size=d + 1)
    y = (rng.random(n) < 0.5).astype(float) if loss.task == "classification" else rng.normal(size=n) * 2
    return X, y, theta


def _away_from_kinks(loss, X, y, theta):
    """Records whose loss is differentiable with room for a finite difference."""
    margins = loss.margins(X, theta)
    if isinstance(loss, HingeLoss):
        return np.abs(1 - (2 * y - 1) * margins) > 1e-3
    if isinstance(loss, HuberLoss):
        return np.abs(np.abs(margins - y) - loss.delta) > 1e-3
    return np.ones(X.shape[0], dtype=bool)


@pytest.mark.parametrize("loss", LOSSES, ids=lambda loss: loss.name)
def test_gradients_match_finite_differences(loss):
    X, y, theta = _data(loss)
    keep = _away_from_kinks(loss, X, y, theta)
    X, y = X[keep], y[keep]
    step = 1e-6
    numeric = np.empty((X.shape[0], theta.size))
    for j in range(theta.size):
        shift = np.zeros_like(theta)
        shift[j] = step
        numeric[:, j] = (loss.losses(X, y, theta + shift) - loss.losses(X, y, theta - shift)) / (2 * step)
    # Central differences are accurate to O(step^2) plus rounding of about
    # 1e-16 / step, so 1e-6 absolute is far above both.
    np.testing.assert_allclose(loss.gradients(X, y, theta), numeric, atol=1e-6)


@pytest.mark.parametrize("loss", LOSSES, ids=lambda loss: loss.name)
def test_gradient_norms_match_gradients(loss):
    X, y, theta = _data(loss)
    expected = np.linalg.norm(loss.gradients(X, y, theta), axis=1)
    np.testing.assert_allclose(loss.gradient_norms(X, y, theta), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("loss", LOSSES, ids=lambda loss: loss.name)
def test_sums_match_per_record_values(loss):
    X, y, theta = _data(loss)
    total, grad = loss.loss_and_gradient_sums(X, y, theta)
    assert total == pytest.approx(loss.losses(X, y, theta).sum(), rel=1e-12)
    np.testing.assert_allclose(grad, loss.gradients(X, y, theta).sum(axis=0), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("loss", [LOSSES[0], LOSSES[1], LOSSES[3]], ids=lambda loss: loss.name)
def test_curvature_matches_gradient_differences(loss):
    X, y, theta = _data(loss)
    keep = _away_from_kinks(loss, X, y, theta)
    X, y = X[keep], y[keep]
    step = 1e-6
    hessian = loss.curvature_sums(X, y, theta) + X.shape[0] * np.diag(loss.penalty_curvature(theta.size))
    for j in range(theta.size):
        shift = np.zeros_like(theta)
        shift[j] = step
        upper = loss.loss_and_gradient_sums(X, y, theta + shift)[1]
        lower = loss.loss_and_gradient_sums(X, y, theta - shift)[1]
        np.testing.assert_allclose(hessian[:, j], (upper - lower) / (2 * step), atol=1e-5)


def test_hinge_curvature_is_feature_second_moment():
    loss = HingeLoss(reg=0.0)
    X, y, theta = _data(loss)
    augmented = np.hstack([X, np.ones((X.shape[0], 1))])
    np.testing.assert_allclose(loss.curvature_sums(X, y, theta), augmented.T @ augmented)


def test_hinge_outside_margin_has_only_penalty_gradient():
    loss = HingeLoss(reg=0.5)
    X = np.array([[2.0, 0.0]])
    theta = np.array([1.0, 0.0, 0.0])
    gradient = loss.gradients(X, np.array([1.0]), theta)[0]
    np.testing.assert_allclose(gradient, [0.5, 0.0, 0.0])


def test_logistic_is_stable_for_large_margins():
    loss = LogisticLoss(reg=0.0)
    X = np.array([[1000.0], [-1000.0]])
    theta = np.array([1.0, 0.0])
    values = loss.losses(X, np.array([0.0, 1.0]), theta)
    assert np.all(np.isfinite(values))
    assert values == pytest.approx([1000.0, 1000.0])


def test_make_loss_rejects_unknown_name():
    with pytest.raises(ValueError, match="loss must be one of least_squares, logistic, hinge, huber, got 'svm'"):
        make_loss("svm")


@pytest.mark.parametrize("reg", [-1.0, float("nan")])
def test_loss_rejects_invalid_reg(reg):
    with pytest.raises(ValueError, match="reg must be a finite number >= 0"):
        LogisticLoss(reg=reg)


def test_huber_rejects_invalid_delta():
    with pytest.raises(ValueError, match="delta must be a finite number > 0, got 0"):
        HuberLoss(delta=0)


@pytest.mark.parametrize("loss", LOSSES, ids=lambda loss: loss.name)
def test_gradient_changes_match_finite_differences(loss):
    X, y, theta = _data(loss, n=60)
    rng = np.random.default_rng(3)
    dX = rng.normal(size=X.shape)
    # Classification labels move between 0 and 1; the derivative in y is
    # the slope of the gradient along that move, taken at the current label.
    dy = rng.normal(size=y.shape)
    step = 1e-6
    upper = loss.gradients(X + step * dX, y + step * dy, theta)
    lower = loss.gradients(X - step * dX, y - step * dy, theta)
    numeric = (upper - lower) / (2 * step)
    # Rows near a kink (hinge margin, Huber threshold) have no derivative;
    # the shift of +-1e-6 must keep a row on one side of it.
    margins = loss.margins(X, theta)
    shift = np.abs(dX @ theta[:-1]) * step + 1e-9
    if isinstance(loss, HingeLoss):
        smooth = np.abs(1 - (2 * y - 1) * margins) > 10 * shift + 1e-6
    elif isinstance(loss, HuberLoss):
        smooth = np.abs(np.abs(margins - y) - loss.delta) > 10 * (shift + np.abs(dy) * step)
    else:
        smooth = np.ones(X.shape[0], dtype=bool)
    assert smooth.sum() > 30
    np.testing.assert_allclose(loss.gradient_changes(X, y, theta, dX, dy)[smooth], numeric[smooth], atol=1e-6)


def test_gradient_changes_match_published_least_squares_form():
    loss = LeastSquaresLoss(reg=0.0)
    X, y, theta = _data(loss, n=5)
    dX = np.ones_like(X)
    dy = np.full(y.shape, 0.5)
    w = theta[:-1]
    residuals = loss.margins(X, theta) - y
    expected_weights = residuals[:, None] * dX + X * (dX @ w)[:, None] - X * dy[:, None]
    np.testing.assert_allclose(loss.gradient_changes(X, y, theta, dX, dy)[:, :-1], expected_weights)


def _sparse_data(loss, n=60, d=8, seed=2):
    """Features with most entries zero, as a dense array and as a CSR array."""
    from scipy import sparse

    X, y, theta = _data(loss, n=n, d=d, seed=seed)
    X[np.random.default_rng(seed).random(X.shape) < 0.7] = 0.0
    return X, sparse.csr_array(X), y, theta


@pytest.mark.parametrize("loss", LOSSES, ids=lambda loss: loss.name)
def test_estimated_norms_match_changed_gradients(loss):
    X, X_sparse, y, theta = _sparse_data(loss)
    rng = np.random.default_rng(3)
    changes, label_changes = rng.normal(size=(3, X.shape[1])), rng.normal(size=3)
    mix = rng.dirichlet(np.ones(3), size=X.shape[0])
    changed = loss.gradients(X, y, theta) + loss.gradient_changes(X, y, theta, mix @ changes, mix @ label_changes)
    expected = np.linalg.norm(changed, axis=1)
    # The closed form reorders the sums: equal up to rounding.
    np.testing.assert_allclose(loss.estimated_norms(X, y, theta, mix, changes, label_changes), expected, rtol=1e-10)
    np.testing.assert_allclose(loss.estimated_norms(X_sparse, y, theta, mix, changes, label_changes), expected,
                               rtol=1e-10)


@pytest.mark.parametrize("loss", LOSSES, ids=lambda loss: loss.name)
def test_sparse_features_give_dense_results(loss):
    X, X_sparse, y, theta = _sparse_data(loss)
    weights = np.random.default_rng(4).random(X.shape[0])
    total, gradient = loss.weighted_sums(X_sparse, y, theta, weights)
    np.testing.assert_allclose(total, weights @ loss.losses(X, y, theta), rtol=1e-12)
    np.testing.assert_allclose(gradient, weights @ loss.gradients(X, y, theta), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(loss.gradient_norms(X_sparse, y, theta), loss.gradient_norms(X, y, theta), rtol=1e-12)
    np.testing.assert_allclose(loss.curvature_sums(X_sparse, y, theta), loss.curvature_sums(X, y, theta), atol=1e-12)
    np.testing.assert_allclose(loss.curvature_diagonal_sums(X_sparse, y, theta),
                               np.diag(loss.curvature_sums(X, y, theta)), atol=1e-12)
