"""A Spark standalone cluster on loopback, and spark-submit runs against it.

:class:`StandaloneCluster` starts a master and workers from the installed
pyspark with ``spark-class``.  :class:`Submission` runs ``spark-submit``.
Each process starts in a session of its own and writes its output to files,
so it can be stopped with everything it forked, and its log can be shown
when a test fails.  Every process binds to 127.0.0.1.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

LOOPBACK = "127.0.0.1"
BIN = Path(sys.executable).parent
SPARK_CLASS = BIN / "spark-class"
SPARK_SUBMIT = BIN / "spark-submit"
REPOSITORY = Path(__file__).resolve().parent.parent
JOB = REPOSITORY / "jobs" / "activeclean_job.py"

MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"

# Daemon settings.  The master of Spark 4.3 starts its REST submission
# server by default, on the fixed port 6066.  The tests submit through the
# RPC port instead, and two clusters on one machine would collide on 6066.
DAEMON_PROPERTIES = {"spark.master.rest.enabled": "false"}

# Options for the daemon, driver and executor JVMs started here.  They live
# for a minute or two, so the optimizing JIT compiler and the parallel
# garbage collector cost more CPU time than they save.  Without these
# options, the executors of one job run used 2 to 4 times the CPU time
# (measured on a 2-core machine).
JVM_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"

# Settings for every submitted application: the driver binds to loopback
# and opens no web UI, and an executor fits in a 1 GiB worker.
SUBMIT_CONF = {
    "spark.driver.host": LOOPBACK,
    "spark.driver.bindAddress": LOOPBACK,
    "spark.ui.enabled": "false",
    "spark.executor.memory": "768m",
    "spark.driver.extraJavaOptions": JVM_OPTIONS,
    "spark.executor.extraJavaOptions": JVM_OPTIONS,
}

# Seconds a process tree gets to exit after SIGTERM before it gets SIGKILL.
STOP_TIMEOUT = 30


def spark_environment(**extra: str) -> dict[str, str]:
    """Return this process's environment with Spark bound to loopback and Python set to this interpreter."""
    environment = dict(os.environ)
    environment.update(
        SPARK_LOCAL_IP=LOOPBACK,
        PYSPARK_PYTHON=sys.executable,
        PYSPARK_DRIVER_PYTHON=sys.executable,
    )
    environment.update(extra)
    return environment


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago.

    Another process may take it before Spark binds it.  Spark then tries the
    next ports, so callers read the port a daemon bound from its log.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


# Process trees, read from /proc.

def _stat_fields(pid: int) -> list[str] | None:
    """Return the fields of /proc/PID/stat after the command name, or None when the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name is in parentheses and may itself contain spaces and parentheses.
    return text[text.rindex(")") + 2:].split()


def is_alive(pid: int) -> bool:
    """Return True when the process exists and is not a zombie."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def descendants(pid: int) -> list[int]:
    """Return the pids of every live process below ``pid`` in the process tree."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, pending = [], list(children.get(pid, []))
    while pending:
        child = pending.pop()
        found.append(child)
        pending.extend(children.get(child, []))
    return [child for child in found if is_alive(child)]


def process_tree(pid: int) -> list[int]:
    """Return ``pid`` and its live descendants."""
    return [pid, *descendants(pid)] if is_alive(pid) else descendants(pid)


def _signal_groups(pids: list[int], signum: int) -> None:
    """Send ``signum`` to the process group of every pid in ``pids``, except this process's own group."""
    groups = set()
    for pid in pids:
        try:
            groups.add(os.getpgid(pid))
        except ProcessLookupError:
            pass
    groups.discard(os.getpgrp())
    for group in groups:
        try:
            os.killpg(group, signum)
        except ProcessLookupError:
            pass


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    """Wait until no pid in ``pids`` is alive; return those still alive after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    alive = [pid for pid in pids if is_alive(pid)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [pid for pid in alive if is_alive(pid)]
    return alive


def stop_tree(process: subprocess.Popen, timeout: float = STOP_TIMEOUT) -> list[int]:
    """Stop ``process`` and every process it forked; return the pids that survived SIGKILL.

    The signals go to process groups, because pyspark's daemon moves itself
    and its Python workers into a group of their own.  SIGTERM comes first,
    so the JVMs run their shutdown hooks, and SIGKILL follows after
    ``timeout`` seconds.
    """
    if process.poll() is not None:
        # Reaped, so its pid may belong to another process by now, and
        # whatever it forked has moved to another parent.
        return []
    pids = process_tree(process.pid)
    _signal_groups(pids, signal.SIGTERM)
    survivors = _wait_gone(pids, timeout)
    if survivors:
        # Processes forked since the tree was read are in the same groups.
        _signal_groups(survivors, signal.SIGKILL)
        survivors = _wait_gone(survivors, 10)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        survivors.append(process.pid)
    return survivors


def command_line(pid: int) -> str:
    """Return the command line of a process, or "" when it is gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def kill_tree(process: subprocess.Popen) -> dict[int, str]:
    """Send SIGKILL to ``process`` and everything it forked; return ``{pid: command line}`` of the killed processes.

    Raises AssertionError when a process is still alive 30 seconds later.
    """
    commands = {pid: command_line(pid) for pid in process_tree(process.pid)}
    _signal_groups(list(commands), signal.SIGKILL)
    process.wait(timeout=30)
    survivors = _wait_gone(list(commands), 30)
    assert not survivors, f"processes {survivors} survived SIGKILL"
    return commands


# Sockets, read from /proc/net/tcp and /proc/net/tcp6.

_LISTEN = "0A"


def _decode_address(hex_address: str) -> str:
    """Decode an address of /proc/net/tcp{,6}: 32-bit words in host (little-endian) byte order."""
    raw = bytes.fromhex(hex_address)
    raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    address = ipaddress.ip_address(raw)
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return str(address)


def _listening_inodes() -> dict[int, tuple[str, int]]:
    """Return ``{socket inode: (address, port)}`` for every listening TCP socket of this network namespace."""
    listening = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as handle:
            next(handle)
            for line in handle:
                fields = line.split()
                if fields[3] != _LISTEN:
                    continue
                hex_address, hex_port = fields[1].split(":")
                listening[int(fields[9])] = (_decode_address(hex_address), int(hex_port, 16))
    return listening


def listening_sockets(pids: list[int]) -> list[tuple[int, str, int]]:
    """Return ``(pid, address, port)`` for every listening TCP socket that a process in ``pids`` holds.

    An IPv4-mapped IPv6 address, as a JVM binds it, is returned as IPv4.
    """
    listening = _listening_inodes()
    found = []
    for pid in pids:
        try:
            descriptors = os.listdir(f"/proc/{pid}/fd")
        except (FileNotFoundError, ProcessLookupError):
            continue
        inodes = set()
        for descriptor in descriptors:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{descriptor}")
            except (FileNotFoundError, ProcessLookupError):
                continue
            if target.startswith("socket:["):
                inodes.add(int(target[len("socket:["):-1]))
        found.extend((pid, *listening[inode]) for inode in sorted(inodes) if inode in listening)
    return found


# The cluster.

class Daemon:
    """A master or worker process and its log file."""

    def __init__(self, name: str, command: list[str], log: Path, environment: dict[str, str]):
        self.name = name
        self.log = log
        with open(log, "wb") as output:
            self.process = subprocess.Popen(
                command, stdout=output, stderr=subprocess.STDOUT, env=environment, start_new_session=True
            )

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


class StandaloneCluster:
    """A standalone master and workers on 127.0.0.1, with their files under ``directory``.

    Worker ``i`` keeps its executors' working directories in
    ``directory/worker-i/work`` and their local directories (shuffle files,
    cached blocks spilled to disk, the engine's block files) in
    ``directory/worker-i/local``.
    """

    def __init__(self, directory: Path, workers: int = 2, cores: int = 1, memory: str = "1g"):
        self.directory = Path(directory)
        self.worker_count = workers
        self.cores = cores
        self.memory = memory
        self.master: Daemon | None = None
        self.workers: list[Daemon] = []
        self.url: str | None = None

    @property
    def daemons(self) -> list[Daemon]:
        return [daemon for daemon in [self.master, *self.workers] if daemon is not None]

    def start(self, timeout: float = 180) -> None:
        """Start the master and the workers; return once every worker has registered with the master.

        Raises RuntimeError with the daemons' logs when a daemon exits or
        the cluster is not up within ``timeout`` seconds.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        properties = self.directory / "spark-daemon.properties"
        properties.write_text("".join(f"{key} {value}\n" for key, value in DAEMON_PROPERTIES.items()))
        deadline = time.monotonic() + timeout

        self.master = Daemon(
            "master",
            [str(SPARK_CLASS), MASTER_CLASS, "--host", LOOPBACK, "--port", str(free_port()),
             "--webui-port", str(free_port()), "--properties-file", str(properties)],
            self.directory / "master.log",
            spark_environment(SPARK_DAEMON_JAVA_OPTS=JVM_OPTIONS),
        )
        started = self._wait_for(self.master, re.compile(r"Starting Spark master at (spark://\S+)"), deadline)
        self.url = started.group(1)
        self._wait_for(self.master, re.compile(r"I have been elected leader! New state: ALIVE"), deadline)

        for index in range(self.worker_count):
            home = self.directory / f"worker-{index}"
            (home / "work").mkdir(parents=True, exist_ok=True)
            (home / "local").mkdir(parents=True, exist_ok=True)
            self.workers.append(Daemon(
                f"worker-{index}",
                [str(SPARK_CLASS), WORKER_CLASS, "--host", LOOPBACK, "--port", str(free_port()),
                 "--webui-port", str(free_port()), "--cores", str(self.cores), "--memory", self.memory,
                 "--work-dir", str(home / "work"), "--properties-file", str(properties), self.url],
                self.directory / f"worker-{index}.log",
                spark_environment(SPARK_DAEMON_JAVA_OPTS=JVM_OPTIONS, SPARK_LOCAL_DIRS=str(home / "local")),
            ))
        for worker in self.workers:
            self._wait_for(worker, re.compile(r"Successfully registered with master"), deadline)
        registered = re.compile(r"Registering worker \S+ with")
        while len(registered.findall(self.master.log_text())) < self.worker_count:
            self._check_running(deadline, f"{self.worker_count} workers to register with the master")
            time.sleep(0.2)

    def _wait_for(self, daemon: Daemon, pattern: re.Pattern, deadline: float) -> re.Match:
        while True:
            match = pattern.search(daemon.log_text())
            if match:
                return match
            self._check_running(deadline, f"{daemon.name} log line {pattern.pattern!r}")
            time.sleep(0.2)

    def _check_running(self, deadline: float, waiting_for: str) -> None:
        for daemon in self.daemons:
            if daemon.process.poll() is not None:
                raise RuntimeError(
                    f"{daemon.name} exited with status {daemon.process.returncode} while waiting for "
                    f"{waiting_for}\n{self.logs()}"
                )
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {waiting_for}\n{self.logs()}")

    def logs(self, tail: int = 4000) -> str:
        """Return the end of every daemon's log."""
        return "\n".join(f"--- {daemon.name} ({daemon.log})\n{daemon.log_text()[-tail:]}" for daemon in self.daemons)

    def pids(self) -> list[int]:
        """Return the pids of the running daemons and of every live process they forked (executors, Python workers)."""
        running = [daemon for daemon in self.daemons if daemon.process.poll() is None]
        return [pid for daemon in running for pid in process_tree(daemon.process.pid)]

    def executor_ids(self, index: int, application: str) -> list[str]:
        """Return the ids of the executors that worker ``index`` launched for ``application``."""
        directory = self.directory / f"worker-{index}" / "work" / application
        return sorted(entry.name for entry in directory.iterdir()) if directory.is_dir() else []

    def kill_worker(self, index: int) -> dict[int, str]:
        """Kill worker ``index`` with its executors and their Python workers by SIGKILL.

        Returns ``{pid: command line}`` of the killed processes.
        """
        return kill_tree(self.workers[index].process)

    def stop(self) -> None:
        """Stop the workers, then the master, with everything they forked.

        Raises RuntimeError naming the processes that survived SIGKILL.
        """
        survivors = []
        for daemon in reversed(self.daemons):
            survivors.extend(stop_tree(daemon.process))
        if survivors:
            raise RuntimeError(f"processes {survivors} of the standalone cluster survived SIGKILL")


# spark-submit.

class Submission:
    """A ``spark-submit`` run in a session of its own, with its output in ``directory/NAME.out`` and ``.err``.

    Used as a context manager, it stops the run with everything it forked
    on exit, so a failing test leaves no driver or executor behind.
    """

    def __init__(self, master: str, application: Path | str, arguments: list[str], directory: Path, *,
                 py_files: list[Path] | None = None, conf: dict[str, str] | None = None, name: str = "submit"):
        command = [str(SPARK_SUBMIT), "--master", master]
        if py_files:
            command += ["--py-files", ",".join(str(path) for path in py_files)]
        for key, value in {**SUBMIT_CONF, **(conf or {})}.items():
            command += ["--conf", f"{key}={value}"]
        command += [str(application), *arguments]
        self.command = command
        directory.mkdir(parents=True, exist_ok=True)
        self.stdout_path = directory / f"{name}.out"
        self.stderr_path = directory / f"{name}.err"
        with open(self.stdout_path, "wb") as stdout, open(self.stderr_path, "wb") as stderr:
            self.process = subprocess.Popen(
                command, stdout=stdout, stderr=stderr, env=spark_environment(), start_new_session=True
            )

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def pids(self) -> list[int]:
        """Return the pids of spark-submit and every live process it forked."""
        return process_tree(self.process.pid)

    def wait(self, timeout: float = 600) -> int:
        """Wait for the run to end and return its exit status.

        After ``timeout`` seconds the run is stopped and TimeoutExpired raised.
        """
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the run with everything it forked, if it is still running."""
        survivors = stop_tree(self.process)
        if survivors:
            raise RuntimeError(f"processes {survivors} of spark-submit survived SIGKILL")

    def __enter__(self) -> Submission:
        return self

    def __exit__(self, *exception) -> None:
        self.stop()


def start_job(master: str, config: str, output_dir: Path, *, py_files: list[Path] | None = None,
              conf: dict[str, str] | None = None) -> Submission:
    """Start ``jobs/activeclean_job.py`` on ``config`` through spark-submit, writing to ``output_dir``.

    spark-submit's output goes to ``OUTPUT_DIR.out`` and ``OUTPUT_DIR.err``
    beside ``output_dir``.
    """
    arguments = [config, "--quiet", "--set", f'output.dir="{output_dir}"']
    return Submission(master, JOB, arguments, output_dir.parent, py_files=py_files, conf=conf,
                      name=output_dir.name)


def submit_job(master: str, config: str, output_dir: Path, *, py_files: list[Path] | None = None,
               conf: dict[str, str] | None = None, timeout: float = 600) -> Submission:
    """Run :func:`start_job` to the end and return the finished :class:`Submission`."""
    with start_job(master, config, output_dir, py_files=py_files, conf=conf) as run:
        run.wait(timeout)
    return run


def assert_ran_on_executors(run: Submission) -> None:
    """Assert that the driver's log shows tasks on executors started by the master, none in the driver.

    A driver that ignored ``--master`` would run every task in its own
    process and still produce the same files.  The check reads the INFO
    lines that Spark's default log4j2 profile prints to stderr.
    """
    log = run.stderr
    assert re.search(r"Starting task .*executor \d+,", log), (
        "no task ran on an executor of the cluster"
    )
    assert "executor driver" not in log, "tasks ran inside the driver, as with a local master"


def application_id(run: Submission) -> str | None:
    """Return the id the standalone master gave the run's application, from the driver's log."""
    found = re.search(r"Connected to Spark cluster with app ID (app-[\w-]+)", run.stderr)
    return found.group(1) if found else None


def build_package_zip(directory: Path) -> Path:
    """Build ``activeclean_spark.zip`` in ``directory`` with ``scripts/build_zip.py`` and return its path."""
    spec = importlib.util.spec_from_file_location("build_zip", REPOSITORY / "scripts" / "build_zip.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_zip(Path(directory) / "activeclean_spark.zip")


# Job outputs.

def read_model(directory: Path) -> dict:
    return json.loads((Path(directory) / "model.json").read_text())


def audit_keys(directory: Path) -> list:
    with open(Path(directory) / "audit.jsonl") as handle:
        return [json.loads(line)["key"] for line in handle]


def history_length(directory: Path) -> int:
    """Return the number of complete lines in ``history.jsonl`` (0 before the first iteration ends)."""
    try:
        return Path(directory, "history.jsonl").read_text().count("\n")
    except FileNotFoundError:
        return 0


def assert_same_run(actual: Path, expected: Path) -> None:
    """Assert that two runs cleaned the same records in the same order and ended at the same model.

    Partition sums may be combined in another order across processes, so
    the floating-point results agree to rounding, not bit for bit.
    """
    assert audit_keys(actual) == audit_keys(expected)
    actual_model, expected_model = read_model(actual), read_model(expected)
    assert list(actual_model["coefficients"]) == list(expected_model["coefficients"])
    np.testing.assert_allclose(
        list(actual_model["coefficients"].values()), list(expected_model["coefficients"].values()),
        rtol=1e-6, atol=1e-9,
    )
    assert actual_model["intercept"] == pytest.approx(expected_model["intercept"], rel=1e-6, abs=1e-9)
