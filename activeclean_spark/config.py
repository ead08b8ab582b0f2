"""Job configuration: a TOML file, validated once, with command-line overrides.

Relative paths are taken from the current working directory, as spark-submit
and the shell do.  See README.md for every section and option.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import tomllib
from dataclasses import dataclass

__all__ = ["ConfigError", "load_config", "apply_override", "Config"]

# Allowed keys per section, with their defaults (None: required or unset).
SECTIONS = {
    "spark": {"master": "local[*]", "app_name": "activeclean", "conf": {}},
    "input": {"path": None, "dataset": None, "format": "csv", "options": {}, "key": None, "row_number": False,
              "corruption": "systematic", "corruption_rate": 0.2, "corruption_seed": 0},
    "features": {"numeric": [], "categorical": [], "hashed": [], "hash_buckets": 1024, "label": None, "task": None,
                 "positive": None, "max_categories": 100, "missing_indicators": "auto", "text": [],
                 "text_buckets": 1 << 18, "sparse": "auto"},
    "model": {"loss": "logistic", "reg": 1e-3, "delta": 1.0},
    "cleaner": {"kind": "oracle", "path": None, "format": None, "options": None, "function": None,
                "missing": "error"},
    "test": {"fraction": None, "seed": 0, "path": None, "format": None, "options": None},
    "run": {"budget": None, "budget_fraction": None, "batch_size": 50, "seed": 0, "floor": 0.05,
            "step_schedule": "inverse_sqrt", "step_size": 0.1, "tol": 0.0, "target": None, "partitions": None,
            "reference": False, "preconditioner": "hessian",
            "control_variate": True, "estimator": None, "sampling": "importance", "update": "sgd_refit"},
    "detector": {"learned": False, "threshold": 0.9, "audit": 0.05, "min_records": 20, "certify": True,
                 "rule": None, "rule_function": None},
    "output": {"dir": "output", "overwrite": False},
    "checkpoint": {"dir": None, "keep": 2, "records_per_run": None},
    "compare": {"methods": ["activeclean", "uniform", "active_learning"], "seeds": [0, 1, 2, 3, 4],
                "budget_fraction": 0.5, "corruptions": None, "rates": None, "tolerance": 0.01,
                "output": "output/compare", "name": None},
}


# Options that exclude one another: an override that sets one drops the
# others, so --set run.budget=300 works on a file that sets budget_fraction.
EXCLUSIVE = [("input", ("path", "dataset")), ("run", ("budget", "budget_fraction")), ("test", ("fraction", "path"))]


class ConfigError(ValueError):
    """The job configuration is invalid; the message names the option and the fix."""


@dataclass
class Config:
    """A validated configuration: one dict per section, defaults filled in."""

    sections: dict
    source: str

    def __getitem__(self, section: str) -> dict:
        return self.sections[section]


def _parse_value(text: str):
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


def apply_override(raw: dict, assignment: str) -> None:
    """Apply ``section.option=value`` to a raw configuration; the value is read as TOML, else as a string."""
    name, sep, text = assignment.partition("=")
    parts = name.strip().split(".")
    if not sep or len(parts) < 2:
        raise ConfigError(f"override {assignment!r} must look like section.option=value, for example run.budget=200")
    target = raw
    for part in parts[:-1]:
        target = target.setdefault(part, {})
        if not isinstance(target, dict):
            raise ConfigError(f"override {assignment!r}: {part!r} is not a section")
    target[parts[-1]] = _parse_value(text.strip())
    for section, options in EXCLUSIVE:
        if len(parts) == 2 and parts[0] == section and parts[1] in options:
            for other in options:
                if other != parts[1]:
                    target.pop(other, None)


def load_config(path: str, overrides: list[str] | None = None) -> Config:
    """Read, override and validate a TOML job configuration."""
    try:
        with open(path, "rb") as handle:
            raw = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"configuration file {path!r} not found") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"configuration file {path!r} is not valid TOML: {error}") from None
    for assignment in overrides or []:
        apply_override(raw, assignment)
    return Config(_validate(raw), path)


def _validate(raw: dict) -> dict:
    unknown = [s for s in raw if s not in SECTIONS]
    if unknown:
        raise ConfigError(f"unknown section [{unknown[0]}]; sections are {', '.join(SECTIONS)}")
    sections = {}
    for name, defaults in SECTIONS.items():
        options = raw.get(name, {})
        extra = [k for k in options if k not in defaults]
        if extra:
            raise ConfigError(f"unknown option {name}.{extra[0]}; options of [{name}] are {', '.join(defaults)}")
        sections[name] = {**defaults, **options}

    source = sections["input"]
    if (source["path"] is None) == (source["dataset"] is None):
        raise ConfigError("set exactly one of input.path (a table to read) and input.dataset (a built-in table)")
    if source["path"] is not None and not source["key"] and not source["row_number"]:
        raise ConfigError("input.key must name the key column; or set input.row_number = true to number the rows")
    features = sections["features"]
    if source["dataset"] is None and not features["label"]:
        raise ConfigError("features.label must name the label column")

    cleaner = sections["cleaner"]
    if cleaner["kind"] not in ("oracle", "record", "batch"):
        raise ConfigError(f"cleaner.kind must be 'oracle', 'record' or 'batch', got {cleaner['kind']!r}")
    if cleaner["kind"] == "oracle" and source["dataset"] is None and not cleaner["path"]:
        raise ConfigError("cleaner.path must name the clean table for the oracle cleaner")
    if cleaner["kind"] != "oracle" and not cleaner["function"]:
        raise ConfigError(f"cleaner.function must name a function as module:name for a {cleaner['kind']} cleaner")

    run = sections["run"]
    if (run["budget"] is None) == (run["budget_fraction"] is None):
        raise ConfigError("set exactly one of run.budget (records) and run.budget_fraction (share of the training records)")
    if run["budget_fraction"] is not None and not 0 < run["budget_fraction"] <= 1:
        raise ConfigError(f"run.budget_fraction must be in (0, 1], got {run['budget_fraction']!r}")
    fraction = sections["test"]["fraction"]
    if fraction is not None and not 0 < fraction < 1:
        raise ConfigError(f"test.fraction must be in (0, 1), got {fraction!r}")
    if fraction is not None and sections["test"]["path"] is not None:
        raise ConfigError("set at most one of test.fraction and test.path")
    if run["reference"] and cleaner["kind"] != "oracle":
        raise ConfigError("run.reference = true needs the oracle cleaner, whose clean table defines the reference model")
    checkpoint = sections["checkpoint"]
    for option in ("keep", "records_per_run"):
        value = checkpoint[option]
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"checkpoint.{option} must be a positive integer, got {value!r}")
    if checkpoint["dir"] is not None and (not isinstance(checkpoint["dir"], str) or not checkpoint["dir"]):
        raise ConfigError(f"checkpoint.dir must be a directory path or URI, got {checkpoint['dir']!r}")
    if checkpoint["records_per_run"] is not None and checkpoint["dir"] is None:
        raise ConfigError("checkpoint.records_per_run needs checkpoint.dir, where the next run finds the state to "
                          "resume from")
    detector = sections["detector"]
    if detector["rule"] is not None and detector["rule_function"] is not None:
        raise ConfigError("set at most one of detector.rule (Spark SQL) and detector.rule_function (module:function)")
    return sections


def import_function(spec: str, option: str):
    """Import ``module:name`` (the module may also be a .py file path)."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not attribute:
        raise ConfigError(f"{option} must look like module:function, got {spec!r}")
    try:
        if module_name.endswith(".py"):
            spec_obj = importlib.util.spec_from_file_location(os.path.basename(module_name)[:-3], module_name)
            if spec_obj is None or not os.path.exists(module_name):
                raise ConfigError(f"{option}: file {module_name!r} not found")
            module = importlib.util.module_from_spec(spec_obj)
            spec_obj.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except ImportError as error:
        raise ConfigError(f"{option}: cannot import module {module_name!r}: {error}") from None
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise ConfigError(f"{option}: module {module_name!r} has no attribute {attribute!r}") from None
