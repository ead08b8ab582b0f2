"""The trained model: coefficients, featurizer and loss, saved as JSON."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa

from .features import Featurizer
from .losses import Loss, make_loss

__all__ = ["ActiveCleanModel", "evaluate", "evaluate_blocks"]

MODEL_FILE = "model.json"


def _metric_sums(loss: Loss, X, y, theta) -> np.ndarray:
    """Return additive sums from which :func:`_metrics_from_sums` derives the metrics."""
    keep = ~np.isnan(y)
    X, y = X[keep], y[keep]
    predicted = loss.predict(X, theta)
    if loss.task == "classification":
        tp = float(((predicted == 1) & (y == 1)).sum())
        fp = float(((predicted == 1) & (y == 0)).sum())
        fn = float(((predicted == 0) & (y == 1)).sum())
        return np.array([y.size, float((predicted == y).sum()), tp, fp, fn])
    residual = predicted - y
    return np.array([y.size, float(residual @ residual), float(np.abs(residual).sum()), 0.0, 0.0])


def _metrics_from_sums(task: str, sums: np.ndarray) -> dict:
    n = sums[0]
    if n == 0:
        return {"n": 0}
    if task == "classification":
        tp, fp, fn = sums[2:]
        f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
        return {"n": int(n), "accuracy": float(sums[1] / n), "f1": float(f1)}
    return {"n": int(n), "rmse": float(np.sqrt(sums[1] / n)), "mae": float(sums[2] / n)}


def evaluate(loss: Loss, X, y, theta) -> dict:
    """Accuracy and F1 (classification) or RMSE and MAE (regression) on numpy arrays."""
    return _metrics_from_sums(loss.task, _metric_sums(loss, X, y, theta))


def evaluate_blocks(blocks, loss: Loss, theta) -> dict:
    """Compute the metrics of :func:`evaluate` over a cached block RDD in one Spark job."""
    shipped = blocks.context.broadcast(theta)
    sums = np.sum(blocks.map_collect(lambda block: _metric_sums(loss, block.X, block.y, shipped.value)), axis=0)
    shipped.destroy()
    return _metrics_from_sums(loss.task, sums)


class ActiveCleanModel:
    """A linear model with the frozen featurizer it was trained with."""

    def __init__(self, theta: np.ndarray, featurizer: Featurizer, loss: Loss, metrics: dict | None = None):
        self.theta = np.asarray(theta, dtype=float)
        self.featurizer = featurizer
        self.loss = loss
        self.metrics = metrics or {}

    @property
    def coefficients(self) -> dict:
        return dict(zip(self.featurizer.feature_names, self.theta[:-1].tolist()))

    @property
    def intercept(self) -> float:
        return float(self.theta[-1])

    def predict_table(self, table: pa.Table) -> np.ndarray:
        """Predict for an Arrow table with the feature columns; the label column may be absent."""
        label = self.featurizer.label["name"]
        if label not in table.column_names:
            table = table.append_column(label, pa.nulls(table.num_rows, pa.string()))
        X, _ = self.featurizer.transform(table)
        return self.loss.predict(X, self.theta)

    def transform(self, df, output_column: str = "prediction"):
        """Add a float prediction column to a Spark DataFrame, computed per Arrow batch.

        Classification models predict 1.0 for the positive class and 0.0
        otherwise; regression models predict the label value.
        """
        model = self

        def predict(batches):
            for batch in batches:
                table = pa.Table.from_batches([batch])
                yield pa.RecordBatch.from_arrays(
                    [*batch.columns, pa.array(model.predict_table(table), pa.float64())],
                    names=[*batch.schema.names, output_column],
                )

        from pyspark.sql.types import DoubleType, StructField, StructType

        # A new StructType: df.schema.add() would change the cached schema object in place.
        schema = StructType([*df.schema.fields, StructField(output_column, DoubleType())])
        return df.mapInArrow(predict, schema)

    def to_dict(self) -> dict:
        return {
            "format": "activeclean_spark.linear/1",
            "loss": self.loss.to_dict(),
            "task": self.loss.task,
            "coefficients": self.coefficients,
            "intercept": self.intercept,
            "featurizer": self.featurizer.to_dict(),
            "metrics": self.metrics,
        }

    def save(self, directory: str) -> str:
        """Write ``model.json`` into ``directory`` atomically and return its path."""
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, MODEL_FILE)
        temporary = path + ".tmp"
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(self.to_dict(), handle, indent=2, default=float)
        os.replace(temporary, path)
        return path

    @classmethod
    def load(cls, path: str) -> "ActiveCleanModel":
        """Load a model from ``model.json`` or from the directory that contains it."""
        if os.path.isdir(path):
            path = os.path.join(path, MODEL_FILE)
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        featurizer = Featurizer.from_dict(data["featurizer"])
        loss_spec = dict(data["loss"])
        loss = make_loss(loss_spec.pop("name"), **loss_spec)
        weights = [data["coefficients"][name] for name in featurizer.feature_names]
        return cls(np.array([*weights, data["intercept"]]), featurizer, loss, data.get("metrics"))
