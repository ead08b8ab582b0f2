"""Build and run an ActiveClean job from a validated configuration."""

from __future__ import annotations

import logging
import os

from .checkpoint import Checkpoints
from .cleaners import BatchCleaner, OracleCleaner, RecordCleaner
from .config import Config, ConfigError, import_function
from .datasets import DATASETS
from .detector import LearnedDetector, RuleDetector
from .engine import ActiveClean
from .features import FeatureSpec
from .losses import make_loss
from .session import get_spark
from .updater import StepSchedule

__all__ = ["build_job", "run_job", "read_table", "option_message"]

logger = logging.getLogger(__name__)

ROW_NUMBER_ORDER = "__activeclean_order__"


def read_table(spark, path: str, fmt: str, options: dict, *, row_number_key: str | None = None):
    """Read a table; with ``row_number_key``, add the 0-based row number in file order as that column.

    Row numbers follow the file order only for a single file, so a directory
    or glob is rejected in that mode.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if "://" not in path and not os.path.exists(path):
        raise ConfigError(f"input file {path!r} not found (relative paths start at {os.getcwd()!r})")
    if fmt not in ("csv", "parquet", "json", "orc"):
        raise ConfigError(f"format must be csv, parquet, json or orc, got {fmt!r}")
    reader = spark.read.format(fmt)
    if fmt == "csv":
        reader = reader.option("header", "true").option("inferSchema", "true")
    df = reader.options(**{k: str(v) for k, v in options.items()}).load(path)
    if row_number_key is None:
        return df
    if os.path.isdir(path) or any(ch in path for ch in "*?["):
        raise ConfigError(f"input.row_number needs a single file, but {path!r} is a directory or pattern; add a key column")
    if row_number_key in df.columns:
        raise ConfigError(f"input.row_number would add column {row_number_key!r}, which the table already has")
    ordered = df.withColumn(ROW_NUMBER_ORDER, F.monotonically_increasing_id())
    numbered = ordered.withColumn(row_number_key, F.row_number().over(Window.orderBy(ROW_NUMBER_ORDER)) - 1)
    return numbered.drop(ROW_NUMBER_ORDER)


# Parameter names in the library's messages, and the options that set them.
OPTION_NAMES = {
    "loss": "model.loss", "reg": "model.reg", "delta": "model.delta",
    "step schedule": "run.step_schedule", "step size": "run.step_size",
    "budget": "run.budget", "batch_size": "run.batch_size", "floor": "run.floor", "seed": "run.seed",
    "tol": "run.tol", "target": "run.target", "preconditioner": "run.preconditioner",
    "control_variate": "run.control_variate", "estimator": "run.estimator", "sampling": "run.sampling",
    "update": "run.update", "detector threshold": "detector.threshold", "detector audit": "detector.audit",
    "detector min_records": "detector.min_records", "rule expression": "detector.rule",
    "num_partitions": "run.partitions", "task": "features.task", "max_categories": "features.max_categories",
    "hash_buckets": "features.hash_buckets", "text_buckets": "features.text_buckets", "sparse": "features.sparse",
    "missing_indicators": "features.missing_indicators",
}


def option_message(message: str) -> str:
    """Name the configuration option in a library message that names a parameter."""
    for name, option in OPTION_NAMES.items():
        if message.startswith(name + " "):
            return option + message[len(name):]
    return message


def _split(df, key: str, fraction: float, seed: int):
    """Split by a hash of the key, so the split is the same on every run and cluster."""
    from pyspark.sql import functions as F

    bucket = F.pmod(F.xxhash64(F.col(key).cast("string"), F.lit(seed)), F.lit(10_000))
    return df.where(bucket >= int(fraction * 10_000)), df.where(bucket < int(fraction * 10_000))


def _tables(spark, config: Config):
    """Return ``(dirty, clean or None, test or None, key, feature spec kwargs, whole input)``."""
    source, features = config["input"], dict(config["features"])
    if source["dataset"] is not None:
        if source["dataset"] not in DATASETS:
            raise ConfigError(f"input.dataset must be one of {', '.join(DATASETS)}, got {source['dataset']!r}")
        dirty_pd, clean_pd, spec = DATASETS[source["dataset"]](
            corruption=source["corruption"], rate=source["corruption_rate"], seed=source["corruption_seed"]
        )
        dirty, clean = spark.createDataFrame(dirty_pd), spark.createDataFrame(clean_pd)
        key = "id"
        for name, value in spec.items():
            if not features.get(name):
                features[name] = value
    else:
        key = source["key"] or "row_id"
        numbered = key if source["row_number"] else None
        dirty = read_table(spark, source["path"], source["format"], source["options"], row_number_key=numbered)
        clean = None
        cleaner = config["cleaner"]
        if cleaner["kind"] == "oracle":
            clean = read_table(
                spark, cleaner["path"], cleaner["format"] or source["format"],
                cleaner["options"] if cleaner["options"] is not None else source["options"], row_number_key=numbered,
            )
    table = dirty
    test = None
    test_config = config["test"]
    if test_config["path"]:
        test = read_table(
            spark, test_config["path"], test_config["format"] or source["format"],
            test_config["options"] if test_config["options"] is not None else source["options"],
        )
    elif test_config["fraction"]:
        if clean is None:
            raise ConfigError(
            "test.fraction takes its test records from the oracle's clean table, so it needs "
            'cleaner.kind = "oracle"; with another cleaner, set test.path to a clean test table'
        )
        dirty, _ = _split(dirty, key, test_config["fraction"], test_config["seed"])
        _, test = _split(clean, key, test_config["fraction"], test_config["seed"])
    return dirty, clean, test, key, features, table


def _cleaner(config: Config, clean, key: str):
    options = config["cleaner"]
    if options["kind"] == "oracle":
        return OracleCleaner(clean, key, missing=options["missing"])
    function = import_function(options["function"], "cleaner.function")
    return RecordCleaner(function) if options["kind"] == "record" else BatchCleaner(function)


def build_job(config: Config, spark=None):
    """Return ``(engine, dirty, test, reference, table)`` for a configuration, without running it.

    ``table`` is the whole input, held-out records included, for the output.
    """
    spark = spark or get_spark(config["spark"]["master"], config["spark"]["conf"], config["spark"]["app_name"])
    dirty, clean, test, key, feature_options, table = _tables(spark, config)
    run, model = config["run"], config["model"]

    task = feature_options.pop("task", None)
    loss_params = {"reg": model["reg"]}
    if model["loss"] == "huber":
        loss_params["delta"] = model["delta"]
    try:
        loss = make_loss(model["loss"], **loss_params)
        spec = FeatureSpec(task=task or loss.task, **feature_options)
        step = StepSchedule(run["step_schedule"], run["step_size"])
    except (ValueError, TypeError) as error:
        raise ConfigError(option_message(str(error))) from None
    if spec.task != loss.task:
        raise ConfigError(f"features.task is {spec.task!r} but loss {loss.name!r} is for {loss.task}")

    budget = run["budget"]
    if budget is None:
        dirty = dirty.cache()
        budget = max(1, int(run["budget_fraction"] * dirty.count()))
    try:
        engine = _engine(config, spec, loss, step, budget, clean, key)
    except (ValueError, TypeError) as error:
        raise ConfigError(option_message(str(error))) from None
    return engine, dirty, test, clean if run["reference"] else None, table


def _detectors(config) -> tuple:
    """Return the ``(rule, learned detector)`` the [detector] section describes; either may be None."""
    options = config["detector"]
    rule = None
    if options["rule"] is not None:
        rule = RuleDetector(expression=options["rule"])
    elif options["rule_function"] is not None:
        rule = RuleDetector(predicate=import_function(options["rule_function"], "detector.rule_function"))
    # Built even when unused, so that an invalid option is reported either way.
    detector = LearnedDetector(
        options["threshold"], audit=options["audit"], min_records=options["min_records"], certify=options["certify"],
    )
    return rule, detector if options["learned"] else None


def _engine(config, spec, loss, step, budget, clean, key):
    run = config["run"]
    rule, detector = _detectors(config)
    return ActiveClean(
        key=key,
        features=spec,
        loss=loss,
        cleaner=_cleaner(config, clean, key),
        budget=budget,
        batch_size=run["batch_size"],
        step=step,
        floor=run["floor"],
        seed=run["seed"],
        num_partitions=run["partitions"],
        tol=run["tol"],
        target=run["target"],
        preconditioner=run["preconditioner"],
        control_variate=run["control_variate"],
        rule=rule,
        detector=detector,
        estimator=run["estimator"],
        sampling=run["sampling"],
        update=run["update"],
    )


def run_job(config: Config, spark=None):
    """Run the job a configuration describes and return the :class:`ActiveCleanResult`."""
    engine, dirty, test, reference, table = build_job(config, spark)
    logger.info("Running ActiveClean from %s: budget %d, batch %d, seed %d",
                config.source, engine.budget, engine.batch_size, engine.seed)
    output, saved = config["output"], config["checkpoint"]
    checkpoints = None
    if saved["dir"] is not None:
        checkpoints = Checkpoints(saved["dir"], keep=saved["keep"], spark=dirty.sparkSession)
    return engine.fit(dirty, test=test, reference=reference, output_dir=output["dir"], overwrite=output["overwrite"],
                      table=table, checkpoint=checkpoints, max_records=saved["records_per_run"])
