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
        self.missed = None  # share of the fitted dirty records the detector would certify

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
        this share of the dirty records it was fitted on.  A detector that
        has not learned to recognize the errors predicts the base rate,
        which exceeds ``threshold`` when few records are dirty.  Without this
        check such a detector would certify most dirty records.
    """

    def __init__(self, threshold: float = 0.9, *, audit: float = 0.05, min_records: int = 20, reg: float = 1e-2,
                 min_class_size: int = 3, certify: bool = True, max_missed: float = 0.1):
        if not (isinstance(threshold, (int, float)) and 0.5 <= threshold < 1):
            raise ValueError(f"detector threshold must be a number in [0.5, 1), got {threshold!r}")
        if not (isinstance(audit, (int, float)) and 0 <= audit < 1):
            raise ValueError(f"detector audit must be a share in [0, 1), got {audit!r}")
        for name, value in (("min_records", min_records), ("min_class_size", min_class_size)):
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

    def fit(self, X: np.ndarray, classes: np.ndarray) -> DetectorModel | None:
        """Fit on the dirty features and error classes of the cleaned records; None before any dirty record."""
        from .losses import LogisticLoss
        from .optimize import fit_lbfgs, local_objective

        classes = self.pooled(classes)
        names = sorted(set(classes.tolist()))
        if len(names) < 2:
            return None
        loss = LogisticLoss(reg=self.reg)
        weights = np.zeros((len(names), X.shape[1] + 1))
        for row, name in enumerate(names):
            target = (classes == name).astype(float)
            weights[row] = fit_lbfgs(local_objective(X, target, loss), np.zeros(X.shape[1] + 1), tol=1e-6, max_iter=200)
        n_clean = int(np.sum(classes == CLEAN))
        model = DetectorModel(names, weights, self.threshold, False)
        if self.certify and classes.size >= self.min_records and n_clean >= 5:
            dirty = classes != CLEAN
            # NOTE: the share is measured on the records the detector was
            # fitted on, so it is optimistic: with few dirty examples and many
            # features the fit can separate them and still miss new ones.
            missed = float(np.mean(model.clean_probability(model.probabilities(X[dirty])) >= self.threshold))
            model.certify = missed <= self.max_missed
            model.missed = missed
        return model
