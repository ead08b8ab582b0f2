# Setup and entry points.  Every target creates the virtual environment
# first if needed, so `make demo` and `make test` work on a fresh clone.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# Spark binds to loopback in every target; the tests set the same.
export SPARK_LOCAL_IP ?= 127.0.0.1

.PHONY: demo test test-fast cluster-test package babyproduct bench bench-session step-sizes results check-java install clean

check-java:
	@bash scripts/check_java.sh

$(STAMP): setup.cfg pyproject.toml
	@bash scripts/check_java.sh
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "error: Python 3.11 or newer is required, found " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

## Run the main job on the embedded default (breast cancer table, local[*]).
demo: check-java $(STAMP)
	$(PY) -m activeclean_spark.cli run conf/demo.toml

## Run the whole test suite: local[2] and multi-process cluster tiers.
test: check-java $(STAMP)
	$(PY) -m pytest

## The suite without the multi-process cluster tier.
test-fast: check-java $(STAMP)
	$(PY) -m pytest -m 'not cluster'

## Only the cluster tier: spark-submit on a standalone master with two workers.
cluster-test: check-java $(STAMP)
	$(PY) -m pytest -m cluster

## Build dist/activeclean_spark.zip, the package for spark-submit --py-files.
package: $(STAMP)
	$(PY) scripts/build_zip.py

## The BabyProduct job (needs ../shared/data beside the repository).
babyproduct: check-java $(STAMP)
	$(PY) -m activeclean_spark.cli run conf/babyproduct.toml

## Time an iteration at 10^5 to 10^7 rows against numpy, naive PySpark and
## MLlib, with peak memory: docs/benchmarks.md (about 40 minutes).
bench: check-java $(STAMP)
	$(PY) benchmarks/iteration.py --markdown docs/benchmarks.md --json docs/benchmarks.json

## Seconds per step of a scripted interactive session on the beers table
## (needs ../shared/data): docs/session_benchmark.md.
bench-session: check-java $(STAMP)
	$(PY) benchmarks/session.py > docs/session_benchmark.md.tmp
	mv docs/session_benchmark.md.tmp docs/session_benchmark.md

## Step-size and preconditioner measurements, written to docs/step_size.md.
step-sizes: check-java $(STAMP)
	$(PY) benchmarks/step_size.py conf/babyproduct.toml conf/demo.toml --seeds 5 > docs/step_size.md.tmp
	mv docs/step_size.md.tmp docs/step_size.md

## ActiveClean against its baselines on BabyProduct (needs ../shared/data),
## three scikit-learn tables and a corruption sweep: docs/results.md.
COMPARISONS := babyproduct breast_cancer digits diabetes sweep
results: check-java $(STAMP)
	for name in $(COMPARISONS); do $(PY) -m activeclean_spark.cli compare conf/compare/$$name.toml --quiet || exit 1; done
	$(PY) benchmarks/results.py $(foreach name,$(COMPARISONS),output/compare/$(name)/results.csv) \
		--markdown docs/results.md --images docs/results

clean:
	rm -rf output spark-warehouse .pytest_cache dist
