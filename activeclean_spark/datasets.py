"""Built-in data: real tables with injected, recorded corruption.

All three tables ship inside the scikit-learn package, so they need no
download and no file outside this repository:

* ``breast_cancer``: Wisconsin diagnostic breast cancer (569 records, 30
  numeric features, binary diagnosis).
* ``digits``: 8x8 images of handwritten digits (1797 records, 64 pixel
  intensities 0-16), labeled ``low`` (0-4) or ``high`` (5-9).
* ``diabetes``: disease progression after one year (442 patients, 10
  standardized measurements, a real-valued target), a regression task.

The corruption follows the published ActiveClean experiments and keeps the
clean original, which serves as the oracle cleaner and as ground truth.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["breast_cancer", "digits", "diabetes", "corrupt", "DATASETS", "CORRUPTIONS"]

CORRUPTIONS = ("random", "systematic", "missing", "label_flip")


def _standardized(frame: pd.DataFrame) -> np.ndarray:
    values = frame.to_numpy(dtype=float)
    std = values.std(axis=0)
    return (values - values.mean(axis=0)) / np.where(std > 0, std, 1.0)


def _largest_weights(frame: pd.DataFrame, labels: np.ndarray, count: int) -> list[str]:
    """Return the ``count`` features with the largest absolute weight in a clean linear model.

    The model is logistic for 0/1 labels and least squares otherwise.
    """
    from .losses import LeastSquaresLoss, LogisticLoss
    from .optimize import fit_lbfgs, local_objective

    binary = set(np.unique(labels).tolist()) <= {0, 1}
    loss = LogisticLoss(reg=1e-2) if binary else LeastSquaresLoss(reg=1e-2)
    X = _standardized(frame)
    theta = fit_lbfgs(local_objective(X, labels.astype(float), loss), np.zeros(X.shape[1] + 1))
    order = np.argsort(-np.abs(theta[:-1]), kind="stable")
    return [frame.columns[i] for i in order[:count]]


def corrupt(
    frame: pd.DataFrame,
    features: list[str],
    labels: np.ndarray,
    *,
    kind: str,
    rate: float,
    seed: int,
    label: str | None = None,
) -> pd.DataFrame:
    """Return a corrupted copy of ``frame``; ``frame`` itself stays the clean original.

    On a ``rate`` share of the records (at least one):

    * ``random``: one random feature is set to 3 times its maximum.
    * ``systematic``: the 3 features with the largest clean-model weight are
      set to their mean, on the records that rank highest in the sum of
      those features (standardized).
    * ``missing``: one random feature is set to NaN.
    * ``label_flip``: the binary ``label`` column takes its other value.
    """
    if kind not in CORRUPTIONS:
        raise ValueError(f"corruption must be one of {', '.join(CORRUPTIONS)}, got {kind!r}")
    if not 0 < rate < 1:
        raise ValueError(f"corruption rate must be in (0, 1), got {rate!r}")
    rng = np.random.default_rng(seed)
    dirty = frame.copy()
    n_corrupt = max(1, int(round(rate * len(frame))))

    if kind in ("random", "missing"):
        rows = rng.choice(len(frame), n_corrupt, replace=False)
        columns = rng.choice(len(features), n_corrupt)
        for row, column in zip(rows, columns):
            name = features[column]
            value = 3.0 * frame[name].max() if kind == "random" else np.nan
            dirty.iloc[row, dirty.columns.get_loc(name)] = value
        return dirty

    if kind == "label_flip":
        if label is None or label not in frame.columns:
            raise ValueError(f"label_flip corruption needs the label column; got label={label!r}")
        values = sorted(frame[label].dropna().unique().tolist())
        if len(values) != 2:
            raise ValueError(f"label_flip needs a binary label, but column {label!r} has values {values[:10]}")
        rows = rng.choice(len(frame), n_corrupt, replace=False)
        column = dirty.columns.get_loc(label)
        for row in rows:
            dirty.iloc[row, column] = values[1] if frame.iloc[row, column] == values[0] else values[0]
        return dirty

    top = _largest_weights(frame[features], labels, 3)
    rank = _standardized(frame[top]).sum(axis=1)
    rows = np.argsort(-rank, kind="stable")[:n_corrupt]
    for name in top:
        dirty.iloc[rows, dirty.columns.get_loc(name)] = frame[name].mean()
    return dirty


def _load(name: str):
    try:
        import sklearn.datasets
    except ImportError:
        raise ImportError(
            f"the {name} dataset needs scikit-learn; install it with pip install 'activeclean_spark[demo]'"
        ) from None
    return getattr(sklearn.datasets, f"load_{name}")(as_frame=True)


def _tables(name: str, labels: np.ndarray, label_name: str, label_values, corruption, rate, seed, spec):
    """Return ``(dirty, clean, spec)`` with an ``id`` key, the features and the label column."""
    data = _load(name)
    features = [str(column).replace(" ", "_") for column in data.data.columns]
    clean = data.data.copy()
    clean.columns = features
    clean = clean.astype(float)
    clean.insert(0, "id", np.arange(len(clean), dtype=np.int64))
    clean[label_name] = label_values
    dirty = corrupt(clean, features, labels, kind=corruption, rate=rate, seed=seed, label=label_name)
    return dirty, clean, {"numeric": features, "label": label_name, **spec}


def breast_cancer(*, corruption: str = "systematic", rate: float = 0.2, seed: int = 0):
    """Return ``(dirty, clean, spec)`` for the breast cancer table.

    Both tables are pandas DataFrames with an ``id`` key, the 30 features and
    a ``diagnosis`` label (``malignant`` or ``benign``).  ``spec`` contains the
    keyword arguments of the matching :class:`FeatureSpec`.
    """
    labels = _load("breast_cancer").target.to_numpy()
    diagnosis = np.where(labels == 0, "malignant", "benign")
    spec = {"task": "classification", "positive": "malignant"}
    return _tables("breast_cancer", labels, "diagnosis", diagnosis, corruption, rate, seed, spec)


def digits(*, corruption: str = "systematic", rate: float = 0.2, seed: int = 0):
    """Return ``(dirty, clean, spec)`` for the digits table: 64 pixels and a ``group`` label (``low``: 0-4, ``high``: 5-9)."""
    labels = (_load("digits").target.to_numpy() >= 5).astype(int)
    spec = {"task": "classification", "positive": "high"}
    return _tables("digits", labels, "group", np.where(labels == 1, "high", "low"), corruption, rate, seed, spec)


def diabetes(*, corruption: str = "systematic", rate: float = 0.2, seed: int = 0):
    """Return ``(dirty, clean, spec)`` for the diabetes table: 10 measurements and the ``progression`` target."""
    target = _load("diabetes").target.to_numpy(dtype=float)
    spec = {"task": "regression"}
    return _tables("diabetes", target, "progression", target, corruption, rate, seed, spec)


DATASETS = {"breast_cancer": breast_cancer, "digits": digits, "diabetes": diabetes}
