"""Convex losses with per-record gradients, vectorized over numpy blocks.

Every loss works on a feature block ``X`` of shape ``(n, d)``, a label vector
``y`` of shape ``(n,)`` and a parameter vector ``theta``.  ``X`` is a numpy
array or, with a sparse featurizer, a scipy CSR array; the methods of
:class:`LinearModelLoss` that return one value per record or one sum per
parameter never form an ``(n, d)`` dense array from it.  The L2 regularizer
is folded into each record's loss, as ActiveClean requires::

    phi(x, y, theta) = l(x, y, theta) + (reg / 2) * ||w||^2

so that the mean of ``phi`` over a relation is the training objective and the
mean of the per-record gradients is its gradient.

Plugging in a loss
------------------
Subclass :class:`Loss` and implement ``n_parameters``, ``losses``,
``gradients`` and ``predict`` with numpy operations over the whole block (no
Python loop over rows).  ``gradient_norms`` has a default built on
``gradients``; override it when the norms have a cheaper closed form.  A loss
for a linear model only needs :class:`LinearModelLoss` and the two functions
of the margin ``m = X @ w + b``: ``margin_losses`` and ``margin_derivatives``.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

from .matrices import is_sparse, row_squares, squared

__all__ = [
    "Loss",
    "LinearModelLoss",
    "LeastSquaresLoss",
    "LogisticLoss",
    "HingeLoss",
    "HuberLoss",
    "make_loss",
    "LOSS_NAMES",
]


class Loss:
    """A convex loss ``phi(x, y, theta)`` with its vectorized gradient.

    Subclasses set ``task`` to ``"classification"`` (labels in {0, 1}) or
    ``"regression"`` (real labels).
    """

    name: str = "custom"
    task: str = "regression"

    def n_parameters(self, n_features: int) -> int:
        raise NotImplementedError

    def losses(self, X: np.ndarray, y: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """Return the loss of every record, shape ``(n,)``."""
        raise NotImplementedError

    def gradients(self, X: np.ndarray, y: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """Return the gradient of every record's loss, shape ``(n, p)``."""
        raise NotImplementedError

    def gradient_norms(self, X: np.ndarray, y: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """Return the Euclidean norm of every record's gradient, shape ``(n,)``."""
        return np.linalg.norm(self.gradients(X, y, theta), axis=1)

    def predict(self, X: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """Return predictions: class labels in {0, 1} or real values."""
        raise NotImplementedError

    def loss_and_gradient_sums(self, X, y, theta):
        """Return the sum of the losses and the sum of the gradients over a block."""
        return float(self.losses(X, y, theta).sum()), self.gradients(X, y, theta).sum(axis=0)

    def weighted_sums(self, X, y, theta, weights):
        """Return the ``weights``-weighted sum of the losses and of the gradients over a block."""
        return float(weights @ self.losses(X, y, theta)), weights @ self.gradients(X, y, theta)

    def curvature_diagonal_sums(self, X, y, theta) -> np.ndarray:
        """Return the diagonal of :meth:`curvature_sums`, shape ``(p,)``."""
        return np.diag(self.curvature_sums(X, y, theta)).copy()

    def curvature_sums(self, X, y, theta) -> np.ndarray:
        """Return the sum over a block of a positive semi-definite curvature matrix, shape ``(p, p)``.

        It is used only to precondition the updates, so any fixed positive
        semi-definite approximation of the Hessian is valid.  Losses without
        one leave it unimplemented and run unpreconditioned.
        """
        raise NotImplementedError

    def to_dict(self) -> dict:
        """Describe the loss for the saved model; a user loss is found again by its class path."""
        return {"name": self.name, "class": f"{type(self).__module__}:{type(self).__qualname__}"}


class LinearModelLoss(Loss):
    """Loss of a linear model ``m = X @ w + b`` with an L2 penalty on ``w``.

    ``theta`` is ``[w_1 .. w_d, b]``: the intercept is the last entry and is
    not penalized.

    Parameters
    ----------
    reg : float, default=1e-3
        L2 penalty strength (the ``reg`` in ``(reg / 2) * ||w||^2``).
    """

    def __init__(self, reg: float = 1e-3):
        if not np.isfinite(reg) or reg < 0:
            raise ValueError(f"reg must be a finite number >= 0, got {reg!r}")
        self.reg = float(reg)

    def n_parameters(self, n_features: int) -> int:
        return n_features + 1

    def margin_losses(self, margins: np.ndarray, y: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def margin_derivatives(self, margins: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Return d l / d m for every record."""
        raise NotImplementedError

    def margins(self, X: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """Return ``X w + b``; a theta of shape (p, k) gives the margins of k models, shape (n, k)."""
        return X @ theta[:-1] + theta[-1]

    def losses(self, X, y, theta):
        w = theta[:-1]
        penalty = 0.5 * self.reg * float(w @ w)
        return self.margin_losses(self.margins(X, theta), y) + penalty

    def gradients(self, X, y, theta):
        c = self.margin_derivatives(self.margins(X, theta), y)
        grads = np.empty((X.shape[0], X.shape[1] + 1))
        if is_sparse(X):
            grads[:, :-1] = X.multiply(c[:, None]).toarray()
        else:
            np.multiply(X, c[:, None], out=grads[:, :-1])
        grads[:, :-1] += self.reg * theta[:-1]
        grads[:, -1] = c
        return grads

    def gradient_norms(self, X, y, theta):
        margins = self.margins(X, theta)
        c = self.margin_derivatives(margins, y)
        return self.norms_from_margins(margins, c, row_squares(X), theta)

    def norms_from_margins(self, margins, c, row_squares, theta):
        """Return the gradient norms from the margins, their derivatives ``c`` and the rows' squared norms.

        ``||c x + reg w||^2 + c^2`` expands into ``c^2 (||x||^2 + 1) +
        2 reg c (x . w) + reg^2 ||w||^2``, and ``x . w`` is the margin minus
        the intercept, so no (n, d) array is formed.
        """
        w = theta[:-1]
        squared = c * c
        squared *= row_squares + 1.0
        cross = margins - theta[-1]
        cross *= 2.0 * self.reg * c
        squared += cross
        squared += self.reg**2 * float(w @ w)
        np.maximum(squared, 0.0, out=squared)
        return np.sqrt(squared, out=squared)

    def masked_sums(self, X, y, thetas, weights, margins=None, derivatives=None, loss_columns=None):
        """Return ``[loss sum, gradient sum]`` of every model over the rows of every mask.

        ``thetas`` contains one model per row, shape (k, p).  ``weights``
        contains one 0/1 mask per column, shape (n, m), or any weights of
        the records, which then weight the sums.  The result has shape
        (m, k, 1 + p).  ``y`` must be finite where a weight is non-zero.  X is read twice in all,
        whatever k and m, and no row subset of it is copied.  ``margins``
        (n, k) and their ``derivatives`` are computed when not given.
        ``loss_columns`` (m booleans, default all) selects the masks whose
        loss sum is computed.  The others get NaN and cost no loss evaluation.
        """
        n, m, k = X.shape[0], weights.shape[1], thetas.shape[0]
        W = thetas[:, :-1]
        margins = self.margins(X, thetas.T) if margins is None else margins
        derivatives = self.margin_derivatives(margins, y[:, None]) if derivatives is None else derivatives
        counts = weights.sum(axis=0)
        weighted = (weights[:, :, None] * derivatives[:, None, :]).reshape(n, m * k)
        sums = np.full((m, k, thetas.shape[1] + 1), np.nan)
        with_loss = np.ones(m, dtype=bool) if loss_columns is None else np.asarray(loss_columns, dtype=bool)
        if with_loss.any():
            rows = slice(None) if with_loss.all() else np.flatnonzero(weights[:, with_loss].any(axis=1))
            values = self.margin_losses(margins[rows], y[rows, None])
            penalties = 0.5 * self.reg * np.einsum("kj,kj->k", W, W)
            sums[with_loss, :, 0] = weights[rows][:, with_loss].T @ values + np.outer(counts[with_loss], penalties)
        sums[:, :, 1:-1] = (X.T @ weighted).T.reshape(m, k, -1) + counts[:, None, None] * self.reg * W[None]
        sums[:, :, -1] = weighted.sum(axis=0).reshape(m, k)
        return sums

    def loss_and_gradient_sums(self, X, y, theta):
        return self.weighted_sums(X, y, theta, np.ones(X.shape[0]))

    def weighted_sums(self, X, y, theta, weights):
        sums = self.masked_sums(X, y, theta[None], np.asarray(weights, dtype=np.float64)[:, None])[0, 0]
        return float(sums[0]), sums[1:]

    def margin_curvatures(self, margins: np.ndarray, y: np.ndarray) -> np.ndarray | None:
        """Return d^2 l / d m^2 for every record, or None where it is zero almost everywhere."""
        return None

    def _curvature_weights(self, X, y, theta) -> np.ndarray:
        # The Hessian of the unpenalized loss in [w, b] is sum c_i [x_i, 1][x_i, 1]^T.
        # Piecewise-linear losses (hinge) have c_i = 0 almost everywhere; they
        # use c_i = 1, the second moment of the features, which has the scale
        # of their curvature near the margin.
        curvature = self.margin_curvatures(self.margins(X, theta), y)
        return np.ones(X.shape[0]) if curvature is None else curvature

    def curvature_sums(self, X, y, theta):
        weights = self._curvature_weights(X, y, theta)
        p = X.shape[1] + 1
        sums = np.empty((p, p))
        if is_sparse(X):
            sums[:-1, :-1] = (X.T @ X.multiply(weights[:, None])).toarray()
        else:
            sums[:-1, :-1] = X.T @ (X * weights[:, None])
        sums[:-1, -1] = sums[-1, :-1] = X.T @ weights
        sums[-1, -1] = weights.sum()
        return sums

    def curvature_diagonal_sums(self, X, y, theta):
        weights = self._curvature_weights(X, y, theta)
        diagonal = np.empty(X.shape[1] + 1)
        diagonal[:-1] = squared(X).T @ weights
        diagonal[-1] = weights.sum()
        return diagonal

    def margin_label_derivatives(self, margins: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Return d (d l / d m) / d y for every record."""
        raise NotImplementedError

    def gradient_changes(self, X, y, theta, dX, dy) -> np.ndarray:
        """Return the first-order change of every record's gradient when x moves by dX and y by dy.

        This is the Jacobian-vector product ``M_x dX + M_y dy`` of the
        gradient ``[c x + reg w, c]`` with ``c = d l / d m``, shape ``(n, p)``:
        the x part is ``[c dX + c' (w . dX) x, c' (w . dX)]`` and the y part
        ``(d c / d y) dy [x, 1]``.  Piecewise-linear losses use ``c' = 0``,
        their derivative almost everywhere.
        """
        w = theta[:-1]
        margins = self.margins(X, theta)
        c = self.margin_derivatives(margins, y)
        curvature = self.margin_curvatures(margins, y)
        slope = np.zeros_like(margins) if curvature is None else curvature
        along = slope * (dX @ w) + self.margin_label_derivatives(margins, y) * dy
        changes = np.empty((X.shape[0], X.shape[1] + 1))
        np.multiply(dX, c[:, None], out=changes[:, :-1])
        changes[:, :-1] += X * along[:, None]
        changes[:, -1] = along
        return changes

    def estimated_norms(self, X, y, theta, mix, dX_classes, dy_classes, squares=None) -> np.ndarray:
        """Return the norm of every record's gradient after its expected cleaning change, to first order.

        The change of record i is ``mix[i] @ dX_classes`` in x and
        ``mix[i] @ dy_classes`` in y (``mix``: class probabilities, shape
        (n, K); ``dX_classes``: mean changes, shape (K, d)).  The result is
        the norm of the gradient plus :meth:`gradient_changes`.  With
        ``e = c + a`` (``a`` the margin change's effect on ``c``), the
        estimated gradient is ``[e x + c dx + reg w, e]``, and its squared
        norm expands into products with x that take one ``X @ dX_classes.T``
        of shape (n, K), so no (n, d) array is formed.  ``squares`` are the
        rows' squared norms, computed when not given.
        """
        w = theta[:-1]
        margins = self.margins(X, theta)
        c = self.margin_derivatives(margins, y)
        curvature = self.margin_curvatures(margins, y)
        along_w = mix @ (dX_classes @ w)  # dx . w
        e = self.margin_label_derivatives(margins, y) * (mix @ dy_classes)
        if curvature is not None:
            e += curvature * along_w
        e += c
        along_x = np.einsum("ik,ik->i", np.asarray(X @ dX_classes.T), mix)  # x . dx
        change_squares = np.einsum("ik,kl,il->i", mix, dX_classes @ dX_classes.T, mix)  # ||dx||^2
        squares = row_squares(X) if squares is None else squares
        total = e * e * (squares + 1.0) + c * c * change_squares + self.reg**2 * float(w @ w)
        total += 2.0 * e * c * along_x
        total += 2.0 * self.reg * (e * (margins - theta[-1]) + c * along_w)
        return np.sqrt(np.maximum(total, 0.0))

    def penalty_curvature(self, n_parameters: int) -> np.ndarray:
        """Return the diagonal of the penalty's Hessian: reg for the weights, 0 for the intercept."""
        diagonal = np.full(n_parameters, self.reg)
        diagonal[-1] = 0.0
        return diagonal

    def to_dict(self):
        return {"name": self.name, "reg": self.reg}


class LeastSquaresLoss(LinearModelLoss):
    """Squared error ``(m - y)^2 / 2`` for regression."""

    name = "least_squares"
    task = "regression"

    def margin_losses(self, margins, y):
        return 0.5 * (margins - y) ** 2

    def margin_derivatives(self, margins, y):
        return margins - y

    def margin_curvatures(self, margins, y):
        return np.ones_like(margins)

    def margin_label_derivatives(self, margins, y):
        return -np.ones_like(margins)

    def predict(self, X, theta):
        return self.margins(X, theta)


def _log1p_exp(z: np.ndarray) -> np.ndarray:
    # log(1 + e^z) = max(z, 0) + log(1 + e^-|z|), which cannot overflow.
    return np.maximum(z, 0.0) + np.log1p(np.exp(-np.abs(z)))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return expit(z)


class LogisticLoss(LinearModelLoss):
    """Binary cross-entropy ``log(1 + e^m) - y m`` with labels in {0, 1}."""

    name = "logistic"
    task = "classification"

    def margin_losses(self, margins, y):
        return _log1p_exp(margins) - y * margins

    def margin_derivatives(self, margins, y):
        return _sigmoid(margins) - y

    def margin_curvatures(self, margins, y):
        s = _sigmoid(margins)
        return s * (1.0 - s)

    def margin_label_derivatives(self, margins, y):
        return -np.ones_like(margins)

    def predict(self, X, theta):
        return (self.margins(X, theta) > 0).astype(float)

    def predict_proba(self, X, theta):
        return _sigmoid(self.margins(X, theta))


class HingeLoss(LinearModelLoss):
    """Linear SVM loss ``max(0, 1 - s m)`` with labels in {0, 1} and ``s = 2y - 1``.

    The subgradient at the kink ``s m = 1`` is taken as 0.
    """

    name = "hinge"
    task = "classification"

    def margin_losses(self, margins, y):
        return np.maximum(0.0, 1.0 - (2.0 * y - 1.0) * margins)

    def margin_derivatives(self, margins, y):
        signs = 2.0 * y - 1.0
        return np.where(signs * margins < 1.0, -signs, 0.0)

    def margin_label_derivatives(self, margins, y):
        # c = -(2y - 1) inside the margin, so d c / d y = -2 there and 0 outside.
        return np.where((2.0 * y - 1.0) * margins < 1.0, -2.0, 0.0)

    def predict(self, X, theta):
        return (self.margins(X, theta) > 0).astype(float)


class HuberLoss(LinearModelLoss):
    """Huber loss for regression: quadratic within ``delta`` of the label, linear beyond.

    Parameters
    ----------
    reg : float, default=1e-3
        L2 penalty strength.
    delta : float, default=1.0
        Residual size, in label units, where the loss turns linear.
    """

    name = "huber"
    task = "regression"

    def __init__(self, reg: float = 1e-3, delta: float = 1.0):
        super().__init__(reg)
        if not np.isfinite(delta) or delta <= 0:
            raise ValueError(f"delta must be a finite number > 0, got {delta!r}")
        self.delta = float(delta)

    def margin_losses(self, margins, y):
        r = np.abs(margins - y)
        return np.where(r <= self.delta, 0.5 * r * r, self.delta * (r - 0.5 * self.delta))

    def margin_derivatives(self, margins, y):
        return np.clip(margins - y, -self.delta, self.delta)

    def margin_curvatures(self, margins, y):
        return (np.abs(margins - y) <= self.delta).astype(float)

    def margin_label_derivatives(self, margins, y):
        return -(np.abs(margins - y) <= self.delta).astype(float)

    def predict(self, X, theta):
        return self.margins(X, theta)

    def to_dict(self):
        return {"name": self.name, "reg": self.reg, "delta": self.delta}


_LOSSES = {cls.name: cls for cls in (LeastSquaresLoss, LogisticLoss, HingeLoss, HuberLoss)}
LOSS_NAMES = tuple(_LOSSES)


def make_loss(name: str, **params) -> Loss:
    """Build a built-in loss by name, for example ``make_loss("logistic", reg=0.01)``.

    A ``class`` parameter of the form ``module:Class`` builds a user loss
    instead, with no arguments (the form :meth:`Loss.to_dict` saves).
    """
    if name not in _LOSSES and "class" in params:
        from .config import import_function

        return import_function(params["class"], "loss class")()
    if name not in _LOSSES:
        raise ValueError(f"loss must be one of {', '.join(LOSS_NAMES)}, got {name!r}")
    return _LOSSES[name](**params)
