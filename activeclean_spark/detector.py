"""Detectors: which records may be dirty, and what kind of error they have.

A :class:`RuleDetector` flags possibly dirty records with a Spark SQL boolean
expression or a Python predicate.  Records it does not flag join R_clean at
initialization with their current values, so they are never drawn.

A :class:`LearnedDetector` learns from the records cleaned so far.  Each
cleaned record is labeled with its error class: ``"clean"`` when the cleaner
left it unchanged, the operation the cleaner reported, ``"removed"``, or
otherwise the set of columns that changed (``"brand+weight"``).  After every
batch a one-vs-rest logistic regression is refitted on the driver from the
dirty features of those records (the featurizer's null indicators included)
and broadcast with the model.  Records whose predicted probability of being
clean reaches ``threshold`` are certified clean for that iteration: they count
in R_clean with their current values and are not drawn.  A small uniform
audit of certified records goes to the cleaner with every batch, so a
detector mistake shows up in the history and teaches the next fit.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

__all__ = ["RuleDetector", "LearnedDetector", "DetectorModel", "error_classes", "CLEAN", "REMOVED"]

CLEAN = "clean"
REMOVED = "removed"
# Classes seen fewer times than this are pooled into one "dirty" class, so
# one-off combinations of changed columns do not each get a classifier fitted
# on one or two records.
POOLED = "dirty"


def error_classes(changed_columns: list[list[str]], removed: list[bool], operations: list) -> np.ndarray:
    """Return the error class of every cleaned record.

    A reported operation comes first.  Without one, a removed record is
    ``"removed"`` and an unchanged one ``"clean"``.  A changed record gets the
    sorted names of its changed columns joined by ``+``.
    """
    classes = []
    for changed, is_removed, operation in zip(changed_columns, removed, operations):
        if operation:
            classes.append(str(operation))
        elif is_removed:
            classes.append(REMOVED)
        elif not changed:
            classes.append(CLEAN)
        else:
            classes.append("+".join(sorted(changed)))
    return np.array(classes, dtype=object)


class RuleDetector:
    """Flag possibly dirty records by a rule; the records it does not flag are clean from the start.

    Parameters
    ----------
    expression : str, optional
        Spark SQL boolean expression over the input columns, for example
        ``"price IS NULL OR price < 0"``.  A null result counts as flagged.
    predicate : callable, optional
        ``predicate(batch: pandas.DataFrame) -> array of bool`` with one
        entry per row, run on the executors over each partition's rows.

    Give exactly one of the two.
    """

    def __init__(self, expression: str | None = None, predicate=None):
        if (expression is None) == (predicate is None):
            raise ValueError("RuleDetector needs exactly one of expression (Spark SQL) or predicate (a function)")
        if expression is not None and (not isinstance(expression, str) or not expression.strip()):
            raise ValueError(f"rule expression must be a non-empty Spark SQL string, got {expression!r}")
        if predicate is not None and not callable(predicate):
            raise TypeError(f"rule predicate must be callable, got {type(predicate).__name__}")
        self.expression = expression
        self.predicate = predicate

    def flags(self, table: pa.Table) -> np.ndarray:
        """Apply the predicate to one partition's rows and return a boolean array (True: possibly dirty)."""
        frame = table.to_pandas()
        try:
            result = self.predicate(frame)
        except Exception as error:
            raise ValueError(f"rule predicate raised {type(error).__name__}: {error}") from error
        flags = pd.Series(np.asarray(result).reshape(-1) if not isinstance(result, pd.Series) else result.to_numpy())
        if len(flags) != len(frame):
            raise ValueError(
                f"rule predicate returned {len(flags)} values for a batch of {len(frame)} rows; "
                "return one boolean per row"
            )
        if flags.dtype != bool:
            if flags.isna().any() or not set(pd.unique(flags)) <= {0, 1, True, False}:
                raise ValueError(
                    f"rule predicate returned values of type {flags.dtype}, such as {flags.iloc[0]!r}; "
                    "return booleans (True for a possibly dirty row)"
                )
        return flags.to_numpy(dtype=bool)


class DetectorModel:
    """Fitted one-vs-rest classifier, small enough to broadcast with the model.

    ``weights`` has one row per class: feature weights, then the intercept.
    """

    def __init__(self, classes: list[str], weights: np.ndarray, threshold: float, certify: bool):
        self.classes = list(classes)
        self.weights = weights
        self.threshold = threshold
        self.certify = certify
        self.missed = None  # cross-validated share of unseen dirty records the detector would certify

    def probabilities(self, X: np.ndarray) -> np.ndarray:
        """Return the class probabilities of every row, shape ``(n, classes)``, rows summing to 1."""
        margins = X @ self.weights[:, :-1].T + self.weights[:, -1]
        scores = 0.5 * (1.0 + np.tanh(0.5 * margins))  # the sigmoid, without overflow warnings
        totals = scores.sum(axis=1, keepdims=True)
        uniform = np.full_like(scores, 1.0 / len(self.classes))
        return np.divide(scores, totals, out=uniform, where=totals > 0)

    def clean_probability(self, probabilities: np.ndarray) -> np.ndarray:
        """Return the column of the ``"clean"`` class, or zeros when no cleaned record was unchanged."""
        if CLEAN not in self.classes:
            return np.zeros(probabilities.shape[0])
        return probabilities[:, self.classes.index(CLEAN)]

    def certified(self, X: np.ndarray, probabilities: np.ndarray | None = None) -> np.ndarray:
        """Return the boolean mask of rows certified clean."""
        if not self.certify or X.shape[0] == 0:
            return np.zeros(X.shape[0], dtype=bool)
        if probabilities is None:
            probabilities = self.probabilities(X)
        return self.clean_probability(probabilities) >= self.threshold


class LearnedDetector:
    """Learn the error classes of dirty records from the records cleaned so far.

    Parameters
    ----------
    threshold : float, default=0.9
        Probability of the ``"clean"`` class at which a record is certified
        clean and no longer drawn.
    audit : float, default=0.05
        Share of each batch drawn uniformly from the certified records
        (at least one draw while any record is certified).
    min_records : int, default=20
        Cleaned records needed before anything is certified; the first fit
        also needs at least 5 clean and 1 dirty example.
    reg : float, default=1e-2
        L2 penalty of each one-vs-rest logistic regression.
    min_class_size : int, default=3
        Error classes with fewer cleaned records are pooled into one ``"dirty"`` class.
    certify : bool, default=True
        False keeps every record drawable; the detector then only predicts
        error classes for the estimator.
    max_missed : float, default=0.1
        Certification stays off while the detector would certify more than
        this share of the dirty records it has not seen, estimated by
        cross-validation on the cleaned records.  A detector that has not
        learned to recognize the errors predicts the base rate, which
        exceeds ``threshold`` when few records are dirty.  One that has seen
        only some kinds of error certifies the others.  Without this check
        either would certify dirty records.
    folds : int, default=5
        Folds of that cross-validation (fewer when fewer dirty records were cleaned).
    """

    def __init__(self, threshold: float = 0.9, *, audit: float = 0.05, min_records: int = 20, reg: float = 1e-2,
                 min_class_size: int = 3, certify: bool = True, max_missed: float = 0.1, folds: int = 5):
        if not (isinstance(threshold, (int, float)) and 0.5 <= threshold < 1):
            raise ValueError(f"detector threshold must be a number in [0.5, 1), got {threshold!r}")
        if not (isinstance(audit, (int, float)) and 0 <= audit < 1):
            raise ValueError(f"detector audit must be a share in [0, 1), got {audit!r}")
        for name, value in (("min_records", min_records), ("min_class_size", min_class_size), ("folds", folds)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"detector {name} must be a positive integer, got {value!r}")
        if not (isinstance(max_missed, (int, float)) and 0 <= max_missed <= 1):
            raise ValueError(f"detector max_missed must be a share in [0, 1], got {max_missed!r}")
        if not (isinstance(reg, (int, float)) and reg > 0):
            raise ValueError(f"detector reg must be a number > 0, got {reg!r}")
        self.threshold = float(threshold)
        self.audit = float(audit)
        self.min_records = min_records
        self.reg = float(reg)
        self.min_class_size = min_class_size
        self.certify = bool(certify)
        self.max_missed = float(max_missed)
        self.folds = folds

    def audit_draws(self, batch_size: int) -> int:
        """Return how many of a batch's draws audit certified records."""
        if self.audit == 0 or not self.certify:
            return 0
        return min(batch_size - 1, max(1, int(round(self.audit * batch_size))))

    def pooled(self, classes: np.ndarray) -> np.ndarray:
        """Return the classes with the rare error classes pooled into ``"dirty"``."""
        classes = np.asarray(classes, dtype=object)
        names, counts = np.unique(classes, return_counts=True)
        rare = {name for name, count in zip(names, counts) if count < self.min_class_size and name != CLEAN}
        return np.array([POOLED if c in rare else c for c in classes], dtype=object)

    def fit(self, X: np.ndarray, classes: np.ndarray, previous: DetectorModel | None = None) -> DetectorModel | None:
        """Fit on the dirty features and error classes of the cleaned records; None before any dirty record.

        ``previous``, the model of the last batch, warm-starts the fits.
        """
        classes = self.pooled(classes)
        names = sorted(set(classes.tolist()))
        if len(names) < 2:
            return None
        start = np.zeros((len(names), X.shape[1] + 1))
        if previous is not None:
            for row, name in enumerate(names):
                if name in previous.classes:
                    start[row] = previous.weights[previous.classes.index(name)]
        weights = self._weights(X, classes, names, start)
        model = DetectorModel(names, weights, self.threshold, False)
        if self.certify and classes.size >= self.min_records and np.sum(classes == CLEAN) >= 5:
            dirty = classes != CLEAN
            # The share on the fitted records is optimistic, so when even it
            # fails, the folds are not needed.
            model.missed = float(np.mean(model.clean_probability(model.probabilities(X[dirty])) >= self.threshold))
            if model.missed <= self.max_missed:
                model.missed = self._held_out_missed(X, classes, names, weights)
            model.certify = model.missed <= self.max_missed
        return model

    def _weights(self, X, classes, names, start):
        """One-vs-rest logistic regressions, one row of weights per class, fitted in one L-BFGS run.

        The objective is the sum of the classes' independent objectives, so
        their joint minimizer is each class's own.  One run avoids a Python
        optimizer loop per class.
        """
        from .losses import LogisticLoss
        from .optimize import fit_lbfgs

        targets = (classes[:, None] == np.asarray(names, dtype=object)[None, :]).astype(float)
        weights = np.empty_like(start)
        # A fold without (or with only) a class: its unpenalized intercept
        # would diverge, so it predicts the class for no (every) row.
        constant = targets.min(axis=0) == targets.max(axis=0)
        weights[constant] = 0.0
        weights[constant, -1] = np.where(targets[0, constant] > 0, 30.0, -30.0)
        fitted = ~constant
        if not fitted.any():
            return weights
        loss, targets = LogisticLoss(reg=self.reg), targets[:, fitted]
        n, shape = X.shape[0], (int(fitted.sum()), X.shape[1] + 1)

        def objective(flat):
            W = flat.reshape(shape)
            margins = X @ W[:, :-1].T + W[:, -1]
            residuals = loss.margin_derivatives(margins, targets) / n
            grad = np.empty(shape)
            grad[:, :-1] = (X.T @ residuals).T + self.reg * W[:, :-1]
            grad[:, -1] = residuals.sum(axis=0)
            value = loss.margin_losses(margins, targets).sum() / n + 0.5 * self.reg * float(np.sum(W[:, :-1] ** 2))
            return value, grad.ravel()

        weights[fitted] = fit_lbfgs(objective, start[fitted].ravel(), tol=1e-6, max_iter=500).reshape(shape)
        return weights

    def _held_out_missed(self, X, classes, names, weights) -> float:
        """Share of the dirty records that a fit without them would certify, by k-fold cross-validation.

        Measured on the records a fit has seen, the share is optimistic: with
        few dirty examples per error and many features the fit separates them
        all and still misses new ones.  The folds are stratified (the clean
        and the dirty records are dealt to them in turn) and fixed by the
        record order, so a rerun gives the same share.
        """
        dirty = classes != CLEAN
        folds = min(self.folds, int(dirty.sum()))
        if folds < 2:
            return 1.0  # one dirty example cannot show that new errors are recognized
        fold = np.empty(classes.size, dtype=np.int64)
        fold[dirty] = np.arange(dirty.sum()) % folds
        fold[~dirty] = np.arange((~dirty).sum()) % folds
        missed = 0
        for k in range(folds):
            held_out = fold == k
            fitted = DetectorModel(names, self._weights(X[~held_out], classes[~held_out], names, weights),
                                   self.threshold, True)
            rows = held_out & dirty
            missed += int(np.sum(fitted.clean_probability(fitted.probabilities(X[rows])) >= self.threshold))
        return missed / float(dirty.sum())
