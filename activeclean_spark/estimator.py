"""Estimated clean gradients for sampling: the mean change that cleaning brings.

For every error class u, the estimator keeps the mean change that cleaning
made to the records of that class, ``dx_u = mean(x_clean - x_dirty)`` and
``dy_u = mean(y_clean - y_dirty)``.  For a dirty record of predicted class u,
a first-order Taylor expansion of the gradient gives the estimate

    g_hat = grad phi(x, y, theta) + M_x dx_u + M_y dy_u

where ``M_x`` and ``M_y`` are the derivatives of the gradient in x and y at the
dirty values (:meth:`LinearModelLoss.gradient_changes`).  Removed records
teach no change.  Losses that do not define the derivatives get their dirty
gradient, and so does a class with no cleaned record yet.
"""

from __future__ import annotations

import numpy as np

from .losses import LinearModelLoss, Loss
from .matrices import column_sums

__all__ = ["ChangeEstimator"]


class ChangeEstimator:
    """Running mean feature and label change per error class.

    Parameters
    ----------
    n_features : int
        Width of the feature matrix.
    """

    def __init__(self, n_features: int):
        self.n_features = n_features
        self._feature_sums: dict = {}
        self._label_sums: dict = {}
        self._feature_counts: dict = {}
        self._label_counts: dict = {}

    def update(self, classes, X_dirty, y_dirty, X_clean, y_clean) -> None:
        """Add cleaned records: their error classes, dirty values and cleaned values (NaN label: removed)."""
        classes = np.asarray(classes, dtype=object)
        not_removed = ~np.isnan(y_clean)
        labelled = not_removed & ~np.isnan(y_dirty)
        for error_class in np.unique(classes[not_removed]):
            rows = not_removed & (classes == error_class)
            change = column_sums(X_clean[rows] - X_dirty[rows])
            self._feature_sums[error_class] = self._feature_sums.get(error_class, 0.0) + change
            self._feature_counts[error_class] = self._feature_counts.get(error_class, 0) + int(rows.sum())
            rows = labelled & (classes == error_class)
            if rows.any():
                label_change = float((y_clean[rows] - y_dirty[rows]).sum())
                self._label_sums[error_class] = self._label_sums.get(error_class, 0.0) + label_change
                self._label_counts[error_class] = self._label_counts.get(error_class, 0) + int(rows.sum())

    def mean_change(self, error_class) -> tuple[np.ndarray, float]:
        """Return ``(dx_u, dy_u)``; zeros for a class with no cleaned record."""
        count = self._feature_counts.get(error_class, 0)
        dx = self._feature_sums[error_class] / count if count else np.zeros(self.n_features)
        label_count = self._label_counts.get(error_class, 0)
        dy = self._label_sums[error_class] / label_count if label_count else 0.0
        return dx, dy

    def change_matrix(self, classes: list) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(dX, dy)`` with one row of mean changes per class, in the order given."""
        dX = np.zeros((len(classes), self.n_features))
        dy = np.zeros(len(classes))
        for row, error_class in enumerate(classes):
            dX[row], dy[row] = self.mean_change(error_class)
        return dX, dy

    def estimated_gradients(self, loss: Loss, X, y, theta, classes, dirty_attributes=None) -> np.ndarray:
        """Return g_hat for every record, shape ``(n, p)``.

        ``classes`` gives each record's predicted error class.  When given,
        the boolean ``dirty_attributes`` of shape ``(n, d)`` keeps the change
        only in the features the detector marks dirty.
        """
        gradients = loss.gradients(X, y, theta)
        if not isinstance(loss, LinearModelLoss):
            return gradients
        classes = np.asarray(classes, dtype=object)
        dX = np.zeros_like(X)
        dy = np.zeros(X.shape[0])
        for error_class in np.unique(classes):
            rows = classes == error_class
            dX[rows], dy[rows] = self.mean_change(error_class)
        if dirty_attributes is not None:
            dX = np.where(dirty_attributes, dX, 0.0)
        return gradients + loss.gradient_changes(X, y, theta, dX, dy)
