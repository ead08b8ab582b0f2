"""Full-batch L-BFGS for the dirty model and for reference models.

Each objective evaluation is one Spark job: a treeAggregate of per-block loss
and gradient sums at a broadcast theta.  L-BFGS (scipy's L-BFGS-B) was chosen
over Spark MLlib because it minimizes exactly the mean of ``phi`` that the
ActiveClean updates use, for every built-in and user-defined loss alike.
MLlib's estimators standardize features and scale the penalty in their own
way, so their optimum is a different theta.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy.optimize import minimize

__all__ = ["fit_lbfgs", "fit_local", "block_objective", "local_objective"]

logger = logging.getLogger(__name__)


def _usable(X, y):
    keep = ~np.isnan(y)
    return (X, y) if keep.all() else (X[keep], y[keep])


def block_objective(blocks, loss, *, reference: bool = False, excluded: dict | None = None, extra=None):
    """Return ``theta -> (mean loss, mean gradient)`` over the usable records of a :class:`BlockSet`.

    With ``reference``, the blocks' clean reference features are used.
    ``excluded`` maps a partition to local positions left out, and ``extra``
    is an ``(X, y)`` pair of driver-side records added to the sums, so that
    cleaned records can replace their dirty versions.
    """
    sc = blocks.context
    extra_X, extra_y = _usable(*extra) if extra is not None else (None, None)

    def evaluate(theta):
        shipped = sc.broadcast((theta, excluded or {}))

        def block_sums(block):
            theta_local, skipped = shipped.value
            X, y = (block.X_reference, block.y_reference) if reference else (block.X, block.y)
            positions = skipped.get(block.partition)
            if positions is not None and positions.size:
                keep = np.ones(block.size, dtype=bool)
                keep[positions] = False
                X, y = X[keep], y[keep]
            X, y = _usable(X, y)
            if X.shape[0] == 0:
                return 0, 0.0, np.zeros_like(theta_local)
            total, grad = loss.loss_and_gradient_sums(X, y, theta_local)
            return X.shape[0], total, grad

        sums = blocks.map_collect(block_sums)
        shipped.destroy()
        count, total = sum(s[0] for s in sums), sum(s[1] for s in sums)
        grad = np.sum([s[2] for s in sums], axis=0)
        if extra_X is not None and extra_X.shape[0]:
            extra_total, extra_grad = loss.loss_and_gradient_sums(extra_X, extra_y, theta)
            count, total, grad = count + extra_X.shape[0], total + extra_total, grad + extra_grad
        if count == 0:
            raise ValueError("no record has a usable label; check the label column and its classes")
        return total / count, grad / count

    return evaluate


def local_objective(X, y, loss, weights=None):
    """Return ``theta -> (mean loss, mean gradient)`` over numpy arrays on the driver.

    With ``weights``, the mean is weighted (and normalized by the weights' sum).
    """
    if weights is not None:
        keep = ~np.isnan(y) & (weights > 0)
        X, y, weights = X[keep], y[keep], weights[keep]
        weights = weights / max(weights.sum(), 1e-300)
    X, y = _usable(X, y)
    if X.shape[0] == 0:
        raise ValueError("no record has a usable label; check the label column and its classes")

    def evaluate(theta):
        if weights is None:
            total, grad = loss.loss_and_gradient_sums(X, y, theta)
            return total / X.shape[0], grad / X.shape[0]
        return loss.weighted_sums(X, y, theta, weights)

    return evaluate


def fit_local(X, y, loss, start: np.ndarray, *, weights=None, tol: float = 1e-5) -> np.ndarray:
    """Minimize :func:`local_objective` from ``start`` and return the minimizer.

    For a linear-model loss, a feature that is 0 in every record gets only
    the L2 penalty's gradient, so its weight is 0 at the minimum.  Without
    a penalty any weight is a minimum there, so it keeps its start.  L-BFGS
    therefore runs over the other features only.  The minimizer is the
    same, the left-out weights are exactly 0, and a hashed text column
    needs thousands of parameters instead of 2^18.
    """
    from .losses import LinearModelLoss
    from .matrices import is_sparse

    if not isinstance(loss, LinearModelLoss):
        return fit_lbfgs(local_objective(X, y, loss, weights), start, tol=tol)
    used = np.unique(X.indices) if is_sparse(X) else np.flatnonzero(np.any(X != 0, axis=0))
    if used.size == X.shape[1]:
        return fit_lbfgs(local_objective(X, y, loss, weights), start, tol=tol)
    parameters = np.append(used, X.shape[1])  # and the intercept
    theta = np.zeros_like(start) if loss.reg > 0 else start.copy()
    theta[parameters] = fit_lbfgs(local_objective(X[:, used], y, loss, weights), start[parameters], tol=tol)
    return theta


def fit_lbfgs(objective, theta0: np.ndarray, *, tol: float = 1e-8, max_iter: int = 500) -> np.ndarray:
    """Minimize ``objective`` from ``theta0`` and return the minimizer.

    ``tol`` bounds the largest gradient entry at convergence (scipy's ``gtol``).
    """
    result = minimize(
        objective,
        np.asarray(theta0, dtype=float),
        jac=True,
        method="L-BFGS-B",
        options={"gtol": tol, "maxiter": max_iter, "ftol": 1e-14},
    )
    if not result.success:
        logger.warning("L-BFGS stopped before convergence after %s iterations: %s", result.nit, result.message)
    logger.info("L-BFGS finished in %s iterations, mean loss %.6g", result.nit, result.fun)
    return result.x
