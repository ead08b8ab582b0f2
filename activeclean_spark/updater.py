"""The unbiased ActiveClean update and its step-size schedules.

At theta_t, with the sizes taken before the batch moves to R_clean:

    g = (|R_dirty| / |R|) * g_S + (|R_clean| / |R|) * g_C
    theta_{t+1} = theta_t - gamma_t * g

``g_S`` is the importance-weighted mean clean gradient of the batch and
``g_C`` the exact mean gradient over R_clean (removed records count with a
zero gradient).  Since E[g_S] is the mean clean gradient over R_dirty, g is an
unbiased estimate of the full clean gradient.

Every estimator here is linear in the per-record gradients, so the same
formulas with the loss stacked in front of the gradient (``value=True``)
give an unbiased estimate of the mean clean loss as well.  The engine uses it
to compare candidate models on the batch just cleaned.
"""

from __future__ import annotations

import numpy as np

__all__ = ["Preconditioner", "PRECONDITIONERS", "StepSchedule", "controlled_batch_gradient", "batch_gradient", "clean_gradient", "combined_gradient", "SCHEDULES",
           "value_and_gradient_sums", "draw_losses"]

SCHEDULES = ("constant", "inverse", "inverse_sqrt", "adagrad")
PRECONDITIONERS = ("hessian", "diagonal", "none")

# Beyond this many parameters the dense p x p curvature matrix (8 p^2 bytes)
# is replaced by its diagonal.
DENSE_LIMIT = 4096


class Preconditioner:
    """A fixed positive-definite matrix P for the update theta -= gamma_t * P^-1 g.

    P is the curvature of the dirty objective at the dirty model, computed
    once before the first iteration.  Because P does not depend on the
    batches, E[P^-1 g] = P^-1 E[g]: the update is preconditioned SGD on the
    clean objective and keeps its unbiasedness.  It turns a step into an
    approximate Newton step, which matters when the features are correlated
    and a plain gradient step moves little in the flat directions.

    Parameters
    ----------
    curvature : ndarray of shape (p, p) or (p,)
        Mean curvature matrix, penalty included, or only its diagonal.
    kind : {"hessian", "diagonal"}, default="hessian"
        Use the whole matrix (Cholesky solve) or only its diagonal.  A
        diagonal curvature, or more than ``DENSE_LIMIT`` parameters, gives
        the diagonal.
    damping : float, default=1.0
        Ridge added to P, as a multiple of its mean eigenvalue.  The dirty
        curvature can be near zero in directions the clean data fills (a
        category the dirty data lacks), where an undamped solve would take
        huge steps.
    """

    def __init__(self, curvature: np.ndarray, kind: str = "hessian", damping: float = 1.0):
        from scipy.linalg import cho_factor

        if kind not in ("hessian", "diagonal"):
            raise ValueError(f"preconditioner must be one of {', '.join(PRECONDITIONERS)}, got {kind!r}")
        p = curvature.shape[0]
        diagonal = curvature if curvature.ndim == 1 else np.diag(curvature)
        ridge = max(damping, 1e-6) * max(float(diagonal.sum()) / p, 1e-12)
        if curvature.ndim == 1 or p > DENSE_LIMIT:
            kind = "diagonal"
        self.kind = kind
        if kind == "diagonal":
            self.diagonal = diagonal + ridge
        else:
            self.factor = cho_factor(curvature + ridge * np.eye(p))

    def solve(self, gradient: np.ndarray) -> np.ndarray:
        """Return P^-1 g."""
        from scipy.linalg import cho_solve

        if self.kind == "diagonal":
            return gradient / self.diagonal
        return cho_solve(self.factor, gradient)


class StepSchedule:
    """Step sizes: ``step(t, g)`` returns the update for iteration t = 1, 2, ...

    Parameters
    ----------
    kind : {"constant", "inverse", "inverse_sqrt", "adagrad"}, default="inverse_sqrt"
        ``gamma_0``, ``gamma_0 / t`` or ``gamma_0 / sqrt(t)`` times g; or
        AdaGrad, which divides each coordinate of ``gamma_0 * g`` by the root
        of the sum of its squares so far.  AdaGrad gives rare one-hot
        features, which get few and small gradients, steps as large as
        frequent ones.
    initial : float, default=0.1
        gamma_0.

    Notes
    -----
    The defaults, with the engine's damped Hessian preconditioner and control
    variate, were chosen with ``benchmarks/step_size.py``.  It ran seeds 0
    to 4 on the BabyProduct table and the breast cancer demo with 10% of the
    records cleaned.  Among constant, 1/t, 1/sqrt(t) and AdaGrad schedules,
    this one gave the lowest model error on both (0.922 to 0.800 and 0.329
    to 0.314) and raised the held-out accuracy of every BabyProduct seed.
    The table is in docs/step_size.md.
    """

    def __init__(self, kind: str = "inverse_sqrt", initial: float = 0.1):
        if kind not in SCHEDULES:
            raise ValueError(f"step schedule must be one of {', '.join(SCHEDULES)}, got {kind!r}")
        if not np.isfinite(initial) or initial <= 0:
            raise ValueError(f"step size must be a finite number > 0, got {initial!r}")
        self.kind = kind
        self.initial = float(initial)
        # AdaGrad's running sums of squared directions; saved with a checkpoint.
        self.squares = None

    def fresh(self) -> "StepSchedule":
        """Return a copy without accumulated state, for a new run."""
        return StepSchedule(self.kind, self.initial)

    def __call__(self, t: int) -> float:
        """Return the scalar step size gamma_t (gamma_0 for AdaGrad)."""
        if self.kind in ("constant", "adagrad"):
            return self.initial
        if self.kind == "inverse":
            return self.initial / t
        return self.initial / np.sqrt(t)

    def step(self, t: int, direction: np.ndarray) -> np.ndarray:
        """Return the update to subtract from theta at iteration t."""
        if self.kind != "adagrad":
            return self(t) * direction
        if self.squares is None:
            self.squares = np.zeros_like(direction)
        self.squares += direction * direction
        # The 1e-12 guards coordinates whose gradient has been exactly zero.
        return self.initial * direction / (np.sqrt(self.squares) + 1e-12)


def _size(loss, X, value):
    return loss.n_parameters(X.shape[1]) + (1 if value else 0)


def value_and_gradient_sums(loss, X, y, theta) -> np.ndarray:
    """Return ``[sum of losses, sum of gradients]`` over the rows with a usable label."""
    usable = ~np.isnan(y)
    if not usable.any():
        return np.zeros(_size(loss, X, True))
    if not usable.all():
        X, y = X[usable], y[usable]
    total, grad = loss.loss_and_gradient_sums(X, y, theta)
    return np.concatenate([[total], grad])


def batch_gradient(loss, X, y, theta, draws, probabilities, n_dirty, batch_size, *, value=False):
    """Return g_S: the importance-weighted mean gradient of the drawn records.

    ``X`` and ``y`` hold the cleaned value of each distinct drawn record, or
    NaN labels for removed ones (zero gradient).  ``draws`` counts how often
    each was drawn and ``probabilities`` gives its draw probability p_j; a
    draw's weight is 1 / (n_dirty * p_j).  With ``value``, the result is the
    weighted mean loss followed by g_S.
    """
    grad = np.zeros(_size(loss, X, value))
    usable = ~np.isnan(y)
    if batch_size == 0 or not usable.any():
        return grad
    weights = draws[usable] / (n_dirty * probabilities[usable])
    total, gradient = loss.weighted_sums(X[usable], y[usable], theta, weights)
    if value:
        grad[0] = total
    grad[-gradient.size:] += gradient
    return grad / batch_size


def draw_losses(loss, X, y, theta, probabilities, n_dirty) -> np.ndarray:
    """Return each distinct drawn record's weighted loss ``loss / (n_dirty * p_j)``, 0 where the label is unusable.

    The count-weighted mean of these terms over the draws is the loss part
    of :func:`batch_gradient` with ``value=True``.  Their spread over the
    draws gives its standard error.
    """
    terms = np.zeros(y.shape[0])
    usable = ~np.isnan(y)
    if usable.any():
        terms[usable] = loss.losses(X[usable], y[usable], theta) / (n_dirty * probabilities[usable])
    return terms


def controlled_batch_gradient(loss, X_clean, y_clean, X_dirty, y_dirty, theta, draws, probabilities, n_dirty,
                              batch_size, dirty_gradient_sum, *, value=False):
    """Return g_S with the dirty gradient as a control variate.

    g_S = mean dirty gradient over R_dirty (exact, from the scoring pass)
          + importance-weighted mean of (clean gradient - dirty gradient) over the draws.

    The second term has expectation mean(clean) - mean(dirty) over R_dirty,
    so g_S keeps the expectation of :func:`batch_gradient`.  Its variance
    comes only from what cleaning changes, which is small when most drawn
    records are nearly clean.  Unusable or removed labels count as a zero
    gradient on either side.  With ``value``, ``dirty_gradient_sum`` starts
    with the dirty loss sum and so does the result.
    """
    correction = batch_gradient(loss, X_clean, y_clean, theta, draws, probabilities, n_dirty, batch_size, value=value)
    correction -= batch_gradient(loss, X_dirty, y_dirty, theta, draws, probabilities, n_dirty, batch_size, value=value)
    return dirty_gradient_sum / n_dirty + correction


def clean_gradient(loss, X, y, theta, n_clean, trusted_sum=None, *, value=False):
    """Return g_C: the sum of the gradients over R_clean divided by |R_clean|.

    ``X`` and ``y`` are the cleaned records.  ``trusted_sum`` adds the
    gradient sum of the records in R_clean that were never cleaned: those a
    rule leaves unflagged or the detector certifies.  ``n_clean`` counts both.
    With ``value``, the mean loss comes first (and ``trusted_sum`` starts
    with the trusted loss sum).
    """
    grad = np.zeros(_size(loss, X, value))
    if trusted_sum is not None:
        grad += trusted_sum
    if n_clean == 0:
        return grad
    sums = value_and_gradient_sums(loss, X, y, theta)
    grad += sums if value else sums[1:]
    return grad / n_clean


def combined_gradient(g_batch, g_clean, n_dirty, n_clean):
    """Mix g_S and g_C in proportion to |R_dirty| and |R_clean|."""
    total = n_dirty + n_clean
    return (n_dirty / total) * g_batch + (n_clean / total) * g_clean
