"""Measure the final model error and test metric of each update setting, over seeds.

Usage: python benchmarks/step_size.py CONFIG [CONFIG ...] [--seeds N] [--defaults-only] [--set S.O=V ...]

Each configuration is prepared once (cached data, dirty and fully clean
models); every setting then spends the configuration's whole cleaning budget
with the same seeds.  Prints a Markdown table, one row per configuration and
setting.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys

import numpy as np

from activeclean_spark.config import load_config
from activeclean_spark.job import build_job
from activeclean_spark.updater import StepSchedule

SCHEDULES = [("inverse_sqrt", 0.3), ("inverse_sqrt", 1.0), ("inverse_sqrt", 3.0), ("constant", 1.0),
             ("adagrad", 0.03), ("adagrad", 0.1), ("adagrad", 0.3)]
# (preconditioner, schedule, gamma_0, control variate)
SETTINGS = [
    *[("none", kind, size, control) for control in (False, True) for kind, size in SCHEDULES],
    *[("hessian", "inverse_sqrt", size, control) for control in (False, True) for size in (0.05, 0.1, 0.2)],
]


def _machine() -> str:
    import pyspark

    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{os.cpu_count()} cores, {memory:.0f} GiB, Python {platform.python_version()}, "
            f"pyspark {pyspark.__version__}, numpy {np.__version__}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="+")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--defaults-only", action="store_true", help="run only the configuration's own settings")
    parser.add_argument("--preconditioned-only", action="store_true", help="run only the preconditioned settings")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.OPTION=VALUE",
                        help="override a configuration value in every configuration")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    machine = _machine()
    print("# Update settings: model error and held-out metric after the cleaning budget\n")
    print(f"Command: `python benchmarks/step_size.py {' '.join(sys.argv[1:])}` ({machine}).\n")
    print("Each row spends the configuration's budget (10% of the training records) with seeds "
          f"0 to {args.seeds - 1}.  Model error is ||theta - theta_c|| / ||theta_c|| against the model "
          "trained on the fully clean training records; the test metric is held-out accuracy.  "
          "The first columns of a row name the update: preconditioner, control variate, step schedule "
          "and gamma_0.  The rows measure the plain SGD step (run.update = sgd); with --defaults-only a row "
          "uses the configuration's own update instead.\n")
    print("| config | preconditioner | control variate | schedule | gamma_0 | model error (dirty) "
          "| model error (mean ± sd) | test metric (dirty) | test metric (mean ± sd) | test metric (worst seed) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for path in args.configs:
        engine, dirty, test, reference, _ = build_job(load_config(path, args.overrides))
        settings = SETTINGS
        if args.preconditioned_only:
            settings = [setting for setting in SETTINGS if setting[0] != "none"]
        if args.defaults_only:
            settings = [(engine.preconditioner, engine.step.kind, engine.step.initial, engine.control_variate)]
        else:
            engine.update = "sgd"
        prepared = engine.prepare(dirty, test=test, reference=reference)
        theta_c = prepared.reference_model.theta
        dirty_error = np.linalg.norm(prepared.dirty_model.theta - theta_c) / np.linalg.norm(theta_c)
        dirty_metric = prepared.dirty_model.metrics["test"]
        metric_name = "accuracy" if "accuracy" in dirty_metric else "rmse"
        label = " ".join([path, *args.overrides])
        for preconditioner, kind, size, control in settings:
            engine.preconditioner, engine.step = preconditioner, StepSchedule(kind, size)
            engine.control_variate = control
            errors, metrics = [], []
            for seed in range(args.seeds):
                engine.seed = seed
                result = engine.run(prepared)
                errors.append(result.model.metrics["model_error"])
                metrics.append(result.model.metrics["test"][metric_name])
            print(
                f"| {label} | {preconditioner} | {'on' if control else 'off'} | {kind} | {size} | {dirty_error:.3f} | "
                f"{np.mean(errors):.3f} ± {np.std(errors):.3f} | {dirty_metric[metric_name]:.3f} | "
                f"{np.mean(metrics):.3f} ± {np.std(metrics):.3f} | "
                f"{(min(metrics) if metric_name == 'accuracy' else max(metrics)):.3f} |",
                flush=True,
            )
        prepared.release()


if __name__ == "__main__":
    main()
