"""Compare ActiveClean with its baselines and ablations on the same data, seeds and budget.

Every method runs through the same engine; they differ only in how a batch
is drawn and how the model moves after it (see :data:`METHODS`).  For each
scenario and seed the data is prepared once (cached blocks, dirty model and
the fully clean model), and every method runs on it with that seed.  A
seed also picks the corruption of a built-in table and the test split, so
the spread over seeds covers the data as well as the draws.
"""

from __future__ import annotations

import copy
import csv
import logging
import math
import os
import time
from dataclasses import dataclass

from .cleaners import OracleCleaner
from .config import Config, ConfigError
from .datasets import CORRUPTIONS
from .detector import LearnedDetector

__all__ = ["METHODS", "Scenario", "compare", "method_options", "scenarios", "COLUMNS"]

logger = logging.getLogger(__name__)

# name -> (description, engine parameters; "detector" True means the configured learned detector)
METHODS = {
    "activeclean": ("importance sampling by the estimated clean gradient, learned detector, SGD update from the "
                    "iterate or, when the batch shows it clearly better, the weighted refit",
                    {"sampling": "importance", "update": "sgd_refit", "detector": True, "estimator": True}),
    "uniform": ("uniform sample, model trained on the cleaned records only",
                {"sampling": "uniform", "update": "retrain_cleaned", "detector": False, "estimator": False}),
    "naive_mix": ("uniform sample written back into the dirty table, model retrained on everything",
                  {"sampling": "uniform", "update": "retrain_all", "detector": False, "estimator": False}),
    "active_learning": ("records nearest the decision boundary, model trained on the cleaned records only",
                        {"sampling": "uncertainty", "update": "retrain_cleaned", "detector": False,
                         "estimator": False}),
    "oracle": ("ActiveClean with importance sampling by the true clean gradient",
               {"sampling": "oracle", "update": "sgd_refit", "detector": False, "estimator": False}),
    "no_detector": ("ActiveClean without the learned detector",
                    {"sampling": "importance", "update": "sgd_refit", "detector": False, "estimator": True}),
    "no_estimator": ("ActiveClean scoring by the dirty gradient",
                     {"sampling": "importance", "update": "sgd_refit", "detector": True, "estimator": False}),
    "no_importance": ("ActiveClean with uniform sampling",
                      {"sampling": "uniform", "update": "sgd_refit", "detector": True, "estimator": True}),
    "no_refit": ("ActiveClean with the plain SGD update, never starting from the weighted refit",
                 {"sampling": "importance", "update": "sgd", "detector": True, "estimator": True}),
}

COLUMNS = [
    "dataset", "corruption", "rate", "scenario", "method", "seed", "records_cleaned", "model_error", "metric",
    "test_metric", "clean_metric", "dirty_metric", "precision", "recall", "seconds",
]


@dataclass(frozen=True)
class Scenario:
    """One table and corruption to compare the methods on."""

    dataset: str
    corruption: str  # "real" for a table with its own errors
    rate: float | None

    @property
    def name(self) -> str:
        if self.rate is None:
            return f"{self.dataset}, {self.corruption} errors"
        return f"{self.dataset}, {self.corruption} {self.rate:.0%}"


def method_options(name: str, detector: LearnedDetector | None) -> dict:
    """Return the engine parameters of a method; ``detector`` is the configured learned detector."""
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r} in compare.methods; methods are {', '.join(METHODS)}")
    options = dict(METHODS[name][1])
    use_detector = options.pop("detector")
    options["detector"] = (detector or LearnedDetector()) if use_detector else None
    return options


def scenarios(config: Config) -> list[Scenario]:
    """Return the scenarios of a configuration: corruptions times rates of a built-in table, or its real errors."""
    source, options = config["input"], config["compare"]
    if source["dataset"] is None:
        if options["corruptions"] or options["rates"]:
            raise ConfigError("compare.corruptions and compare.rates apply to a built-in input.dataset only")
        name = options["name"] or os.path.basename(os.path.dirname(os.path.abspath(source["path"])))
        return [Scenario(name, "real", None)]
    corruptions = options["corruptions"] or [source["corruption"]]
    rates = options["rates"] or [source["corruption_rate"]]
    for corruption in corruptions:
        if corruption not in CORRUPTIONS:
            raise ConfigError(f"compare.corruptions: {corruption!r} is not one of {', '.join(CORRUPTIONS)}")
    for rate in rates:
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate < 1:
            raise ConfigError(f"compare.rates: {rate!r} is not a share in (0, 1)")
    name = options["name"] or source["dataset"]
    return [Scenario(name, corruption, float(rate)) for corruption in corruptions for rate in rates]


def _check(config: Config) -> None:
    options = config["compare"]
    seeds = options["seeds"]
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and s >= 0 for s in seeds):
        raise ConfigError(f"compare.seeds must be a non-empty list of integers >= 0, got {seeds!r}")
    methods = options["methods"]
    if not isinstance(methods, list) or not methods:
        raise ConfigError(f"compare.methods must be a non-empty list of method names, got {methods!r}")
    for method in methods:
        method_options(method, None)
    fraction = options["budget_fraction"]
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        raise ConfigError(f"compare.budget_fraction must be in (0, 1], got {fraction!r}")
    if config["cleaner"]["kind"] != "oracle":
        raise ConfigError("compare needs cleaner.kind = \"oracle\": the clean table defines the reference model")


def _scenario_config(config: Config, scenario: Scenario, seed: int) -> Config:
    sections = copy.deepcopy(config.sections)
    if scenario.rate is not None:
        sections["input"].update(corruption=scenario.corruption, corruption_rate=scenario.rate, corruption_seed=seed)
    sections["test"]["seed"] = seed
    sections["run"].update(seed=seed, reference=True, budget=None, budget_fraction=config["compare"]["budget_fraction"])
    return Config(sections, config.source)


def _metric_name(metrics: dict) -> str:
    return "accuracy" if "accuracy" in metrics else "rmse"


def _rows(scenario: Scenario, method: str, seed: int, prepared, result) -> list[dict]:
    """Return one tidy row per point of a run's cleaning curve."""
    reference = prepared.reference_model.metrics["test"]
    dirty = prepared.dirty_model.metrics["test"]
    metric = _metric_name(dirty)
    base = {
        "dataset": scenario.dataset, "corruption": scenario.corruption, "rate": scenario.rate,
        "scenario": scenario.name, "method": method, "seed": seed, "metric": metric,
        "clean_metric": reference.get(metric), "dirty_metric": dirty.get(metric),
    }
    rows = []
    has_detector = METHODS[method][1]["detector"]
    # A method that keeps the dirty records starts from the dirty model; one
    # that trains on the cleaned records only has no model before cleaning.
    if METHODS[method][1]["update"] != "retrain_cleaned":
        start = result.dirty_model.metrics
        rows.append({**base, "records_cleaned": 0, "model_error": result.model.metrics.get("dirty_model_error"),
                     "test_metric": start["test"].get(metric), "precision": None, "recall": None, "seconds": 0.0})
    for record in result.history:
        detection = record.get("detection", {})
        rows.append({
            **base,
            "records_cleaned": record["cleaned"],
            "model_error": record.get("model_error"),
            "test_metric": record.get("test", {}).get(metric),
            "precision": detection.get("precision") if has_detector else None,
            "recall": detection.get("recall") if has_detector else None,
            "seconds": record["seconds"] - prepared.seconds,
        })
    return rows


def compare(config: Config, spark=None, *, plots: bool = True) -> str:
    """Run every method over the scenarios and seeds of ``config`` and return the CSV path.

    Writes ``results.csv`` (one row per method, seed and point of the
    cleaning curve) into ``compare.output``, and a PNG of the curves per
    scenario when ``plots`` is true.
    """
    from .job import build_job
    from .session import get_spark

    _check(config)
    # Every option is checked before Spark starts, so a mistake costs no session.
    planned = scenarios(config)
    options = config["compare"]
    spark = spark or get_spark(config["spark"]["master"], config["spark"]["conf"], config["spark"]["app_name"])
    directory = options["output"]
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "results.csv")
    temporary = path + ".tmp"
    started = time.perf_counter()
    with open(temporary, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for scenario in planned:
            for seed in options["seeds"]:
                for row in _run_scenario(build_job, _scenario_config(config, scenario, seed), scenario, seed, spark):
                    writer.writerow({k: _cell(v) for k, v in row.items()})
                handle.flush()
    os.replace(temporary, path)
    logger.info("Comparison written to %s in %.0f s", path, time.perf_counter() - started)
    if plots:
        import pandas as pd

        from .report import plot_curves

        plot_curves(pd.read_csv(path), directory)
    return path


def _cell(value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return value


def _run_scenario(build_job, config: Config, scenario: Scenario, seed: int, spark) -> list[dict]:
    engine, dirty, test, reference, _ = build_job(config, spark)
    # The reference table is small in a comparison, so the oracle looks
    # records up on the driver instead of running a Spark job per batch.
    engine = engine.clone(cleaner=OracleCleaner(reference.toPandas(), engine.key))
    prepared = engine.prepare(dirty, test=test, reference=reference)
    rows = []
    try:
        for method in config["compare"]["methods"]:
            options = method_options(method, engine.detector)
            if options["sampling"] == "uncertainty" and engine.loss.task != "classification":
                logger.warning("Skipping %s on %s: uncertainty sampling needs a classifier", method, scenario.name)
                continue
            began = time.perf_counter()
            result = engine.clone(**options).run(prepared)
            rows += _rows(scenario, method, seed, prepared, result)
            final = rows[-1]
            logger.info("%s seed %d %s: %d cleaned, %s %.4f, model error %.4f, %.1f s", scenario.name, seed, method,
                        final["records_cleaned"], final["metric"], final["test_metric"], final["model_error"],
                        time.perf_counter() - began)
    finally:
        prepared.release()
    return rows
