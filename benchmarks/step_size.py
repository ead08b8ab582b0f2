"""Measure final model error and test metric per step-size setting, over seeds.

Usage: python benchmarks/step_size.py CONFIG [CONFIG ...] [--seeds N]

Each configuration is prepared once (cached data, dirty and clean models);
every setting then runs the whole cleaning budget with the same seeds.
Prints one Markdown table row per configuration and setting.
"""

from __future__ import annotations

import argparse
import itertools
import logging

import numpy as np

from activeclean_spark.config import load_config
from activeclean_spark.job import build_job
from activeclean_spark.updater import StepSchedule

SETTINGS = [
    *[("none", kind, size) for kind, size in itertools.product(("constant", "inverse_sqrt"), (0.3, 1.0, 3.0))],
    *[("none", "adagrad", size) for size in (0.03, 0.1, 0.3, 1.0)],
    *[("hessian", "inverse_sqrt", size) for size in (0.1, 0.3, 1.0)],
]

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="+")
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    print("| config | preconditioner | schedule | gamma_0 | model error (dirty) | model error (mean ± sd) | test metric (dirty) | test metric (mean ± sd) |")
    print("|---|---|---|---|---|---|---|---|")
    for path in args.configs:
        engine, dirty, test, reference, _ = build_job(load_config(path))
        prepared = engine.prepare(dirty, test=test, reference=reference)
        dirty_error = np.linalg.norm(prepared.dirty_model.theta - prepared.reference_model.theta) / np.linalg.norm(
            prepared.reference_model.theta
        )
        dirty_metric = prepared.dirty_model.metrics["test"]
        metric_name = "accuracy" if "accuracy" in dirty_metric else "rmse"
        for preconditioner, kind, size in SETTINGS:
            engine.preconditioner, engine.step = preconditioner, StepSchedule(kind, size)
            errors, metrics = [], []
            for seed in range(args.seeds):
                engine.seed = seed
                result = engine.run(prepared)
                errors.append(result.model.metrics["model_error"])
                metrics.append(result.model.metrics["test"][metric_name])
            print(
                f"| {path} | {preconditioner} | {kind} | {size} | {dirty_error:.3f} | "
                f"{np.mean(errors):.3f} ± {np.std(errors):.3f} | {dirty_metric[metric_name]:.3f} | "
                f"{np.mean(metrics):.3f} ± {np.std(metrics):.3f} |",
                flush=True,
            )
        prepared.release()


if __name__ == "__main__":
    main()
