"""Time an ActiveClean iteration on generated tables and compare it with the alternatives.

Usage:
    python benchmarks/iteration.py --markdown docs/benchmarks.md   # every case, about 40 minutes
    python benchmarks/iteration.py --cases 100000x20 1000000x20w10 --markdown out.md
    python benchmarks/iteration.py part engine --rows N --features D  # one measurement, JSON on stdout

Each case is a :class:`SyntheticTable` of N rows and D numeric features
(10% dirty), on local[2] with two partitions.  A case ``NxDwW`` adds a text
column of W words per record, hashed into 2^18 features, so its blocks are
sparse; it runs the engine and numpy measurements only.  Every measurement
runs in its own process, so that the peak memory of one does not hide in
another's:

* ``engine``: an empty Python job with two tasks (Spark's floor), the
  dirty-model fit on the cached blocks, and ActiveClean's default loop
  with batches of 50 and the oracle cleaner.  The phases of each iteration
  come from the history's ``timings``.  Peak resident memory of the driver's
  Python, the JVM (driver and executor in local mode) and the Python
  workers.
* ``spark_cache``: the same loop with the block files turned off
  (``spark.activeclean.sharedBlocks=false``), so that every pass reads the
  pickled blocks from Spark's cache; only where N x D is at most 2 x 10^7.
* ``numpy``: the scoring pass's arithmetic over all N rows in one process.
* ``naive``: a PySpark loop that scores Row objects one at a time and
  fetches the drawn rows with a filter.
* ``mllib``: Spark MLlib's LogisticRegression on the same standardized
  features, objective and tolerance as the dirty-model fit.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from activeclean_spark.blocks import SHARED_BLOCKS_CONF

PARTITIONS = 2
MASTER = "local[2]"
BATCH = 50
WARMUP = 3
ITERATIONS = 12
TOLERANCE = 1e-8
REG = 1e-3
# (rows, numeric features, words of text per record)
CASES = ((100_000, 20, 0), (1_000_000, 20, 0), (10_000_000, 20, 0), (1_000_000, 200, 0), (1_000_000, 20, 10),
         (1_000_000, 20, 40))
# Measurements of a case with text; the others need dense features.
TEXT_PARTS = ("engine", "numpy")
PHASES = ("score", "draw", "collect", "clean", "clean_gradient", "update")
PARTS = ("engine", "spark_cache", "numpy", "naive", "mllib")
# The Spark-cache-only engine runs where a pass over pickled blocks stays short.
SPARK_CACHE_MAX_VALUES = 20_000_000
# Spark settings of every measurement, besides the loopback defaults.
# NOTE: at 10^7 x 20 each of the two blocks reaches the JVM as one 1.7 GB
# array, and a 6 GB heap has run out of memory there (the make bench run
# of docs/benchmarks.md passed).
SPARK_CONF = {"spark.driver.memory": "6g", "spark.driver.maxResultSize": "2g"}


# -- shared helpers ------------------------------------------------------


def _median_spread(values) -> dict:
    values = np.asarray(values, dtype=float)
    return {"median": float(np.median(values)), "q1": float(np.percentile(values, 25)),
            "q3": float(np.percentile(values, 75)), "n": int(values.size)}


def _timed(function, repeat: int, warmup: int = 2) -> dict:
    for _ in range(warmup):
        function()
    seconds = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - started)
    return _median_spread(seconds)


def _status_kib(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _children() -> dict:
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parents[int(entry)] = int(stat.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
    children: dict = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    return children


def _spark_processes() -> tuple[list[int], list[int]]:
    """Return the pids of the JVMs and of the Python workers started below this process."""
    children = _children()
    jvm, workers, stack = [], [], list(children.get(os.getpid(), []))
    while stack:
        pid = stack.pop()
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if command and command[0].endswith(b"java"):
            jvm.append(pid)
        elif b"pyspark.daemon" in command or b"pyspark.worker" in command:
            workers.append(pid)
        stack.extend(children.get(pid, []))
    return jvm, workers


class MemorySampler:
    """Track the peak anonymous resident memory (heap and Python objects, no mapped files) of the processes.

    The kernel keeps only the peak of the whole resident size (VmHWM), which
    counts the pages of memory-mapped files too: the shuffle and block files
    that the JVM maps and the block files that the Python workers map.
    Those pages belong to the page cache and are shared, so the anonymous
    part is sampled every ``interval`` seconds instead.
    """

    def __init__(self, interval: float = 0.2):
        self.interval = interval
        self.peaks = {"driver_python": 0.0, "jvm": 0.0, "python_workers_sum": 0.0, "python_workers_max": 0.0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._sample()

    def _run(self):
        while not self._stop.wait(self.interval):
            self._sample()

    def _sample(self):
        jvm, workers = _spark_processes()
        anonymous = [_status_kib(pid, "RssAnon") / 1024 for pid in workers]
        current = {
            "driver_python": _status_kib(os.getpid(), "RssAnon") / 1024,
            "jvm": sum(_status_kib(pid, "RssAnon") for pid in jvm) / 1024,
            "python_workers_sum": sum(anonymous),
            "python_workers_max": max(anonymous, default=0.0),
        }
        for name, value in current.items():
            self.peaks[name] = max(self.peaks[name], value)


def peak_memory(sampler: MemorySampler | None = None) -> dict:
    """Peak resident memory (MiB) of this process, its JVM and the Python workers below it.

    The ``*_rss`` figures are the kernel's peaks of the whole resident size;
    the others, from ``sampler``, the sampled peaks of anonymous memory.
    """
    jvm, workers = _spark_processes()
    peaks = [_status_kib(pid, "VmHWM") / 1024 for pid in workers]
    memory = {
        "driver_python_rss": _status_kib(os.getpid(), "VmHWM") / 1024,
        "jvm_rss": sum(_status_kib(pid, "VmHWM") for pid in jvm) / 1024,
        "python_workers_max_rss": max(peaks, default=0.0),
        "python_workers": len(peaks),
    }
    if sampler is not None:
        memory.update(sampler.peaks)
    return memory


def _spark(conf: dict | None = None):
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from activeclean_spark import get_spark

    spark = get_spark(MASTER, {**SPARK_CONF, **(conf or {})}, app_name="activeclean-benchmark")
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def _table(rows: int, features: int, words: int = 0):
    from activeclean_spark.synthetic import SyntheticTable

    return SyntheticTable(rows, features, rate=0.1, seed=0, words=words)


def _engine(table, iterations: int):
    from activeclean_spark import ActiveClean, LogisticLoss

    return ActiveClean(
        key=table.key, features=table.feature_spec(), loss=LogisticLoss(reg=REG), cleaner=table.cleaner(),
        budget=BATCH * iterations, batch_size=BATCH, num_partitions=PARTITIONS, seed=0,
    )


def _standardized(table, keys, featurizer=None):
    """Features of ``keys`` standardized as the engine's featurizer does (population mean and std)."""
    X, labels = table.values(keys)
    if featurizer is None:
        mean, std = X.mean(axis=0), X.std(axis=0)
    else:
        mean = np.array([c["mean"] for c in featurizer.numeric])
        std = np.array([c["std"] for c in featurizer.numeric])
    return (X - mean) / std, labels.astype(float)


# -- the measurements ----------------------------------------------------


def engine_part(spark, rows: int, features: int, words: int = 0, *, iterations: int = ITERATIONS,
                warmup: int = WARMUP) -> dict:
    """Floor, dirty-model fit, the phases of each ActiveClean iteration and peak memory."""
    with MemorySampler() as sampler:
        result = _engine_measurements(spark, rows, features, words, iterations, warmup)
    result["memory"] = peak_memory(sampler)
    return result


def _feature_storage(block) -> dict:
    """Bytes and non-zero entries of a block's feature matrix."""
    from activeclean_spark.matrices import is_sparse

    X = block.X
    if is_sparse(X):
        return {"bytes": X.data.nbytes + X.indices.nbytes + X.indptr.nbytes, "entries": int(X.nnz)}
    return {"bytes": X.nbytes, "entries": int(np.count_nonzero(X))}


def _engine_measurements(spark, rows: int, features: int, words: int, iterations: int, warmup: int) -> dict:
    from activeclean_spark.optimize import block_objective, fit_lbfgs

    sc = spark.sparkContext
    floor = _timed(lambda: sc.parallelize(range(PARTITIONS), PARTITIONS).map(lambda x: x).collect(), 15)
    table = _table(rows, features, words)
    # Repeated draws of one record make a batch add fewer than BATCH records,
    # so the budget leaves room for two more iterations than are measured.
    engine = _engine(table, warmup + iterations + 2)
    started = time.perf_counter()
    prepared = engine.prepare(table.dataframe(spark, partitions=PARTITIONS))
    prepare_seconds = time.perf_counter() - started
    try:
        storage = prepared.blocks.map_collect(_feature_storage)
        evaluations = []
        objective = block_objective(prepared.blocks, engine.loss)

        def counted(theta):
            evaluations.append(1)
            return objective(theta)

        started = time.perf_counter()
        theta = fit_lbfgs(counted, np.zeros(prepared.featurizer.n_features + 1), tol=TOLERANCE)
        fit_seconds = time.perf_counter() - started
        result = engine.run(prepared)
        missed = prepared.blocks.missed
    finally:
        prepared.release()
    measured = result.history[warmup:warmup + iterations]
    phases = {phase: _median_spread([r["timings"].get(phase, 0.0) for r in measured]) for phase in PHASES}
    total = _median_spread([sum(r["timings"].values()) for r in measured])
    return {
        "rows": rows, "features": features, "words": words, "floor": floor, "prepare_seconds": prepare_seconds,
        "fit": {"seconds": fit_seconds, "evaluations": len(evaluations),
                "theta": theta.tolist() if theta.size <= 10_000 else None},
        "featurizer": prepared.featurizer.to_dict(), "parameters": int(theta.size),
        "feature_bytes": sum(s["bytes"] for s in storage), "feature_entries": sum(s["entries"] for s in storage),
        "phases": phases, "iteration": total, "iterations": len(measured), "block_file_misses": missed,
        "versions": _versions(spark),
    }


def numpy_part(rows: int, features: int, words: int = 0, *, repeat: int = ITERATIONS) -> dict:
    """Time the scoring pass's arithmetic on one block of all rows, in this process alone."""
    from activeclean_spark.blocks import Block
    from activeclean_spark.losses import LogisticLoss
    from activeclean_spark.sampler import ScoringPlan, score_and_draw

    table = _table(rows, features, words)
    keys = np.arange(rows, dtype=np.int64)
    raw = table.arrow(keys)
    if words:
        spec = table.feature_spec()
        X, y = spec.fit_from_statistics([spec.partial_statistics(raw)]).transform(raw)
    else:
        X, y = _standardized(table, keys)
    block = Block(partition=0, keys=keys, X=X, y=y, raw=raw)
    loss = LogisticLoss(reg=REG)
    theta = np.full(X.shape[1] + 1, 0.1)
    plan = ScoringPlan(candidates=(theta * 1.01,))
    excluded = np.arange(0, rows, max(rows // 500, 1))
    step = iter(range(10**9))
    seconds = _timed(lambda: score_and_draw(block, loss, theta, excluded, BATCH, 0, next(step), gradient_sum=True,
                                            plan=plan), repeat)
    return {"rows": rows, "features": features, "pass": seconds, "memory": peak_memory()["driver_python_rss"]}


def naive_part(spark, rows: int, features: int, *, repeat: int = 3) -> dict:
    """Time a Row-at-a-time PySpark iteration: score each Row in Python, collect, draw, filter the batch."""
    from pyspark import StorageLevel

    table = _table(rows, features)
    engine = _engine(table, 1)
    columns = table.columns
    df = table.dataframe(spark, partitions=PARTITIONS)
    # The same standardization as the engine's featurizer.
    stats = df.selectExpr(*[f"avg({c})" for c in columns], *[f"stddev_pop({c})" for c in columns]).first()
    mean, std = np.array(stats[:features]), np.array(stats[features:])
    records = df.rdd.persist(StorageLevel.MEMORY_AND_DISK)
    records.count()
    rng = np.random.default_rng(0)
    theta = np.full(features + 1, 0.1)
    reg = engine.loss.reg

    def iteration():
        w, b = theta[:-1], theta[-1]

        def score(row):
            x = (np.array([row[c] for c in columns]) - mean) / std
            c = 1.0 / (1.0 + math.exp(-float(x @ w + b))) - row[table.label]
            return row[table.key], float(np.sqrt(np.sum((c * x + reg * w) ** 2) + c * c))

        scored = records.map(score).collect()
        ids = np.array([key for key, _ in scored])
        scores = np.array([value for _, value in scored])
        probabilities = 0.95 * scores / scores.sum() + 0.05 / scores.size
        drawn = set(rng.choice(ids, BATCH, p=probabilities).tolist())
        return records.filter(lambda row: row[table.key] in drawn).collect()

    seconds = _timed(iteration, repeat, warmup=1)
    records.unpersist()
    return {"rows": rows, "features": features, "iteration": seconds}


def mllib_part(spark, rows: int, features: int, featurizer: dict) -> dict:
    """Fit MLlib's LogisticRegression on the engine's standardized features, same objective and tolerance."""
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.feature import VectorAssembler
    from pyspark.sql import functions as F

    table = _table(rows, features)
    df = table.dataframe(spark, partitions=PARTITIONS)
    scaled = [((F.col(c["name"]) - c["mean"]) / c["std"]).alias(c["name"]) for c in featurizer["numeric"]]
    df = df.select(*scaled, F.col(table.label).cast("double").alias("label"))
    assembled = VectorAssembler(inputCols=table.columns, outputCol="features").transform(df)
    data = assembled.select("features", "label").repartition(PARTITIONS).cache()
    data.count()
    # Mean log-loss plus (REG / 2) ||w||^2 with an unpenalized intercept, as LogisticLoss(reg=REG).
    model_spec = LogisticRegression(regParam=REG, elasticNetParam=0.0, standardization=False, fitIntercept=True,
                                    tol=TOLERANCE, maxIter=500, family="binomial")
    started = time.perf_counter()
    model = model_spec.fit(data)
    seconds = time.perf_counter() - started
    data.unpersist()
    theta = [*model.coefficients.toArray().tolist(), float(model.intercept)]
    return {"rows": rows, "features": features, "seconds": seconds, "iterations": model.summary.totalIterations,
            "theta": theta}


def _versions(spark) -> dict:
    import pyarrow
    import pyspark

    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cores": os.cpu_count(), "memory_gib": round(memory, 1), "python": platform.python_version(),
        "spark": pyspark.__version__, "java": spark.sparkContext._jvm.System.getProperty("java.version"),
        "numpy": np.__version__, "pyarrow": pyarrow.__version__, "master": MASTER, "partitions": PARTITIONS,
    }


# -- orchestration -------------------------------------------------------


def run_part(part: str, rows: int, features: int, featurizer: dict | None = None, words: int = 0) -> dict:
    """Run one measurement in this process and return its JSON-ready result."""
    if part == "numpy":
        return numpy_part(rows, features, words)
    spark = _spark({SHARED_BLOCKS_CONF: "false"} if part == "spark_cache" else None)
    try:
        if part in ("engine", "spark_cache"):
            return engine_part(spark, rows, features, words)
        if part == "naive":
            return naive_part(spark, rows, features, repeat=1 if rows > 1_000_000 else 3)
        return mllib_part(spark, rows, features, featurizer)
    finally:
        spark.stop()


def _subprocess(part: str, rows: int, features: int, featurizer: dict | None = None, words: int = 0) -> dict:
    command = [sys.executable, __file__, "part", part, "--rows", str(rows), "--features", str(features),
               "--words", str(words)]
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(featurizer, handle)
    command += ["--featurizer", handle.name]
    print(f"measuring {part} at {rows} x {features}, {words} words", file=sys.stderr, flush=True)
    try:
        finished = subprocess.run(command, check=True, capture_output=True, text=True)
    except subprocess.CalledProcessError as error:
        raise SystemExit(f"{part} at {rows} x {features} failed:\n{error.stderr[-3000:]}") from None
    finally:
        os.unlink(handle.name)
    return json.loads(finished.stdout.strip().splitlines()[-1])


def measure_case(rows: int, features: int, words: int = 0, *, parts=PARTS, runner=_subprocess) -> dict:
    """Return every measurement of one case; ``runner(part, rows, features, featurizer, words)`` runs each."""
    engine = runner("engine", rows, features, None, words)
    case = {"engine": engine}
    for part in parts:
        if part == "spark_cache" and rows * features > SPARK_CACHE_MAX_VALUES or words and part not in TEXT_PARTS:
            continue
        if part != "engine":
            case[part] = runner(part, rows, features, engine["featurizer"], words)
    return case


# -- the report ----------------------------------------------------------


def _ms(value: float) -> str:
    return f"{value * 1000:.0f}" if value >= 0.0095 else f"{value * 1000:.1f}"


def _cell(stats: dict) -> str:
    return f"{_ms(stats['median'])} ({_ms(stats['q1'])}-{_ms(stats['q3'])})"


def _size_name(rows: int, features: int, words: int = 0) -> str:
    name = f"{rows:.0e} x {features}".replace("e+0", "e")
    return f"{name} + text ({words} words, 2^18)" if words else name


def _name(case: dict) -> str:
    engine = case["engine"]
    return _size_name(engine["rows"], engine["features"], engine.get("words", 0))


def _relative_difference(theta, other) -> float:
    theta, other = np.asarray(theta), np.asarray(other)
    return float(np.linalg.norm(theta - other) / np.linalg.norm(other))


def derived(case: dict) -> dict:
    """Ratios of one case: floor, numpy, naive, MLlib, coefficient difference."""
    engine = case["engine"]
    iteration = engine["iteration"]["median"]
    values = {"iteration": iteration, "floor_ratio": iteration / engine["floor"]["median"]}
    if "spark_cache" in case:
        values["spark_cache_ratio"] = case["spark_cache"]["iteration"]["median"] / iteration
    if "numpy" in case:
        # Both sides share the driver's phases; only the pass differs.
        driver = iteration - engine["phases"]["score"]["median"]
        values["numpy_ratio"] = iteration / (case["numpy"]["pass"]["median"] + driver)
    if "naive" in case:
        values["naive_ratio"] = case["naive"]["iteration"]["median"] / iteration
    if "mllib" in case:
        values["mllib_ratio"] = engine["fit"]["seconds"] / case["mllib"]["seconds"]
        values["coefficient_difference"] = _relative_difference(engine["fit"]["theta"], case["mllib"]["theta"])
    return values


def targets(cases: list[dict]) -> list[tuple[str, str, str, bool]]:
    """Return ``(target, limit, measured, met)`` for each target a run of these cases can check."""
    by_size = {(c["engine"]["rows"], c["engine"]["features"], c["engine"].get("words", 0)): derived(c) for c in cases}
    rows = []
    million, ten_million = by_size.get((1_000_000, 20, 0)), by_size.get((10_000_000, 20, 0))
    if million:
        rows.append(("iteration at 1e6 x 20", "<= 250 ms", f"{million['iteration'] * 1000:.0f} ms",
                     million["iteration"] <= 0.25))
        rows.append(("iteration / empty job at 1e6 x 20", "<= 2", f"{million['floor_ratio']:.2f}",
                     million["floor_ratio"] <= 2.0))
    if ten_million:
        rows.append(("iteration at 1e7 x 20", "<= 1200 ms", f"{ten_million['iteration'] * 1000:.0f} ms",
                     ten_million["iteration"] <= 1.2))
        if "numpy_ratio" in ten_million:
            rows.append(("iteration / numpy at 1e7 x 20", "<= 5", f"{ten_million['numpy_ratio']:.2f}",
                         ten_million["numpy_ratio"] <= 5.0))
    if million and ten_million:
        growth = ten_million["iteration"] / million["iteration"]
        rows.append(("1e7 / 1e6 iteration", "<= 10", f"{growth:.2f}", growth <= 10.0))
    for (n, d, words), values in by_size.items():
        name = _size_name(n, d, words)
        if words and n == 1_000_000:
            rows.append((f"iteration at {name}", "<= 1000 ms", f"{values['iteration'] * 1000:.0f} ms",
                         values["iteration"] <= 1.0))
        if "naive_ratio" in values:
            rows.append((f"naive / iteration at {name}", ">= 20", f"{values['naive_ratio']:.0f}",
                         values["naive_ratio"] >= 20.0))
        if "mllib_ratio" in values:
            rows.append((f"fit / MLlib fit at {name}", "<= 1.0", f"{values['mllib_ratio']:.2f}",
                         values["mllib_ratio"] <= 1.0))
            rows.append((f"coefficient difference at {name}", "<= 1e-4", f"{values['coefficient_difference']:.1e}",
                         values["coefficient_difference"] <= 1e-4))
    return rows


def markdown(cases: list[dict], command: str) -> str:
    versions = cases[0]["engine"]["versions"]
    lines = [
        "# Benchmarks: one ActiveClean iteration",
        "",
        f"Command: `{command}`, one run on {versions['cores']} cores and {versions['memory_gib']:.0f} GiB, "
        f"Python {versions['python']}, Spark {versions['spark']}, Java {versions['java']}, numpy "
        f"{versions['numpy']}, pyarrow {versions['pyarrow']}; master `{versions['master']}`, "
        f"{versions['partitions']} partitions.",
        "",
        "Data: generated tables (`activeclean_spark.synthetic.SyntheticTable`, 10% dirty), logistic loss with "
        f"reg {REG}, batches of {BATCH} records, the default update (`sgd_refit`, control variate on).  Times are "
        f"medians over {ITERATIONS} iterations after {WARMUP} of warm-up, with the interquartile range in "
        "parentheses, in milliseconds.",
        "",
        "## Targets",
        "",
        "| target | limit | measured | met |",
        "|---|---|---|---|",
        *[f"| {name} | {limit} | {measured} | {'yes' if met else 'no'} |" for name, limit, measured, met in targets(cases)],
        "",
        "## Phases of one iteration (ms)",
        "",
        "| case | iteration | scoring pass | draw | collect batch | clean (oracle) | g_C | update | empty job |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for case in cases:
        engine = case["engine"]
        phases = engine["phases"]
        lines.append(f"| {_name(case)} | {_cell(engine['iteration'])} | "
                     + " | ".join(_cell(phases[p]) for p in PHASES) + f" | {_cell(engine['floor'])} |")
    lines += [
        "",
        "## Against the alternatives",
        "",
        "| case | iteration / empty job | iteration / numpy | Spark cache only / iteration | naive / iteration | "
        "fit / MLlib fit | coefficient difference |",
        "|---|---|---|---|---|---|---|",
    ]
    for case in cases:
        values = derived(case)

        def show(name, form="{:.2f}"):
            return form.format(values[name]) if name in values else "not measured"

        lines.append(f"| {_name(case)} | {show('floor_ratio')} | {show('numpy_ratio')} | {show('spark_cache_ratio')} | "
                     f"{show('naive_ratio', '{:.0f}')} | {show('mllib_ratio')} | "
                     f"{show('coefficient_difference', '{:.1e}')} |")
    lines += [
        "",
        "## Dirty-model training (s)",
        "",
        "The engine's `prepare` generates the table, caches and featurizes it and fits the dirty model; the "
        "L-BFGS column times a second fit of the same model on the cached blocks.",
        "",
        "| case | prepare | ActiveClean L-BFGS | evaluations | MLlib LogisticRegression | MLlib iterations |",
        "|---|---|---|---|---|---|",
    ]
    for case in cases:
        engine, mllib = case["engine"], case.get("mllib")
        mllib_cells = f"{mllib['seconds']:.2f} | {mllib['iterations']}" if mllib else "not measured | -"
        lines.append(f"| {_name(case)} | {engine['prepare_seconds']:.1f} | {engine['fit']['seconds']:.2f} | "
                     f"{engine['fit']['evaluations']} | {mllib_cells} |")
    lines += [
        "",
        "## Peak memory (MiB)",
        "",
        "Anonymous memory (heap, Python objects) sampled every 0.2 s, and in parentheses the kernel's peak "
        "resident size, which also counts pages of memory-mapped files (Spark's shuffle and cached blocks in the "
        "JVM, the block files in the Python workers).  Those pages sit in the page cache and are shared by all "
        "the workers of an executor.",
        "",
        "| case | parameters | feature matrix in the blocks (non-zero entries) | driver Python | "
        "JVM (driver and executor) | largest Python worker | all Python workers | numpy process |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for case in cases:
        engine = case["engine"]
        memory = engine["memory"]
        numpy_memory = f"{case['numpy']['memory']:.0f}" if "numpy" in case else "not measured"
        storage = (f"{engine['feature_bytes'] / 2**20:.0f} ({engine['feature_entries']:.2e})"
                   if "feature_bytes" in engine else "not measured")
        lines.append(f"| {_name(case)} | {engine.get('parameters', engine['features'] + 1)} | {storage} | "
                     f"{memory['driver_python']:.0f} ({memory['driver_python_rss']:.0f}) | "
                     f"{memory['jvm']:.0f} ({memory['jvm_rss']:.0f}) | {memory['python_workers_max']:.0f} "
                     f"({memory['python_workers_max_rss']:.0f}) | {memory['python_workers_sum']:.0f} "
                     f"({memory['python_workers']} processes) | {numpy_memory} |")
    return "\n".join(lines) + "\n"


def _parse_case(text: str) -> tuple[int, int, int]:
    try:
        size, _, words = text.lower().partition("w")
        rows, features = (int(float(part)) for part in size.split("x"))
        return rows, features, int(words or 0)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"a case is ROWSxFEATURES or ROWSxFEATURESwWORDS, for example 1000000x20 or 1000000x20w10, got {text!r}"
        ) from None


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    part = sub.add_parser("part", help="run one measurement and print it as JSON")
    part.add_argument("part", choices=PARTS)
    part.add_argument("--rows", type=int, required=True)
    part.add_argument("--features", type=int, required=True)
    part.add_argument("--words", type=int, default=0)
    part.add_argument("--featurizer", help="JSON file with the engine's featurizer (mllib)")
    parser.add_argument("--cases", nargs="+", type=_parse_case, default=list(CASES), metavar="ROWSxFEATURES[wWORDS]")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--markdown", help="write the report here (default: standard output)")
    parser.add_argument("--json", help="also write the raw measurements here")
    args = parser.parse_args(argv)

    if args.command == "part":
        featurizer = json.loads(Path(args.featurizer).read_text()) if args.featurizer else None
        print(json.dumps(run_part(args.part, args.rows, args.features, featurizer, args.words)))
        return
    cases = [measure_case(rows, features, words, parts=args.parts) for rows, features, words in args.cases]
    command = "python benchmarks/iteration.py " + " ".join(sys.argv[1:])
    report = markdown(cases, command.strip())
    if args.json:
        Path(args.json).write_text(json.dumps(cases, indent=1))
    if args.markdown:
        Path(args.markdown).write_text(report)
    else:
        print(report)


if __name__ == "__main__":
    main()
