"""Command line: ``activeclean run|compare CONFIG [--set section.option=value ...]``."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from .checkpoint import CheckpointError
from .cleaners import CleanerError
from .config import ConfigError, load_config

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="activeclean", description="ActiveClean on Apache Spark")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run an ActiveClean job described by a TOML configuration")
    run.add_argument("config", help="path of the TOML job configuration")
    run.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="SECTION.OPTION=VALUE",
        help="override one configuration value, for example --set run.budget=200 (repeatable)",
    )
    run.add_argument("--master", help="Spark master URL for a session started here, for example local[2] "
                     "(same as --set spark.master=...)")
    run.add_argument("--quiet", action="store_true", help="log warnings and errors only")

    compare = commands.add_parser(
        "compare", help="compare ActiveClean with its baselines over seeds; writes results.csv and plots"
    )
    compare.add_argument("config", help="path of the TOML configuration with a [compare] section")
    compare.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="SECTION.OPTION=VALUE",
        help="override one configuration value, for example --set compare.seeds=[0,1] (repeatable)",
    )
    compare.add_argument("--master", help="Spark master URL, for example local[2]")
    compare.add_argument("--no-plots", action="store_true", help="write the CSV only (no matplotlib needed)")
    compare.add_argument("--quiet", action="store_true", help="log warnings and errors only")
    return parser


def _summary(result) -> dict:
    metrics = result.model.metrics
    return {
        "records_cleaned": result.n_cleaned,
        "iterations": len(result.history),
        "dirty_test": metrics.get("dirty_test"),
        "activeclean_test": metrics.get("test"),
        "clean_test": metrics.get("clean_test"),
        "model_error": metrics.get("model_error"),
        "dirty_model_error": metrics.get("dirty_model_error"),
        "seconds": round(result.seconds, 1),
        "output_dir": result.output_dir,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the command line and return the exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    overrides = list(args.overrides)
    if args.master:
        overrides.append(f'spark.master="{args.master}"')
    try:
        config = load_config(args.config, overrides)
        if args.command == "compare":
            from .compare import compare

            path = compare(config, plots=not args.no_plots)
            print(json.dumps({"results": path}, indent=2))
            return 0
        from .job import run_job

        result = run_job(config)
    except ConfigError as error:
        print(f"activeclean: invalid configuration: {error}", file=sys.stderr)
        return 2
    except CheckpointError as error:
        print(f"activeclean: {error}", file=sys.stderr)
        return 2
    except FileExistsError as error:
        print(f"activeclean: {error}", file=sys.stderr)
        return 2
    except CleanerError as error:
        print(f"activeclean: cleaner failed: {error}; the records cleaned so far are saved in the output directory",
              file=sys.stderr)
        return 1
    except (ValueError, TypeError) as error:
        # Invalid input data (a missing column, a duplicate key, an unusable
        # label); the traceback goes to the debug log only.
        from .job import option_message

        logging.getLogger(__name__).debug("Run failed", exc_info=True)
        print(f"activeclean: invalid input: {option_message(str(error))}", file=sys.stderr)
        return 2
    print(json.dumps(_summary(result), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
