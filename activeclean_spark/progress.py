"""Progress of long Spark steps, shown in the terminal and in notebooks.

A :class:`SparkProgress` block tags the Spark jobs it starts with a job group
and a background thread polls Spark's status tracker for their tasks.  The
bar is tqdm's: a text bar on a terminal, a widget in Jupyter when
ipywidgets is installed (text otherwise).
"""

from __future__ import annotations

import sys
import threading
import uuid

__all__ = ["SparkProgress", "progress_wanted"]

GROUP_PROPERTY = "spark.jobGroup.id"
DESCRIPTION_PROPERTY = "spark.job.description"


def _in_notebook() -> bool:
    """Return True inside a Jupyter kernel."""
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    ipython = shell.get_ipython() if hasattr(shell, "get_ipython") else None
    return ipython is not None and type(ipython).__name__ == "ZMQInteractiveShell"


def progress_wanted(progress: bool | None) -> bool:
    """Return whether to show progress: as set, or by default on a terminal and in notebooks."""
    if progress is not None:
        return bool(progress)
    return _in_notebook() or sys.stderr.isatty()


class SparkProgress:
    """Show the tasks of the Spark jobs started inside a ``with`` block as a progress bar.

    Parameters
    ----------
    sc : pyspark.SparkContext
        Context that runs the jobs.
    description : str
        Text before the bar, such as ``"dirty model"``.
    enabled : bool, default=True
        False makes the block a no-op, for batch jobs and logs.
    interval : float, default=0.5
        Seconds between two polls of the status tracker.

    The bar appears with the block's first Spark job.  It shows the tasks
    of the latest job, and the count of jobs (passes over the data) so far.
    """

    def __init__(self, sc, description: str, *, enabled: bool = True, interval: float = 0.5):
        self.sc = sc
        self.description = description
        self.enabled = enabled
        self.interval = interval
        self.group = f"activeclean-{uuid.uuid4().hex[:12]}"
        self._stop = threading.Event()
        self._thread = None
        self._bar = None
        self._saved = {}

    def __enter__(self) -> "SparkProgress":
        if not self.enabled:
            return self
        self._saved = {name: self.sc.getLocalProperty(name) for name in (GROUP_PROPERTY, DESCRIPTION_PROPERTY)}
        self.sc.setLocalProperty(GROUP_PROPERTY, self.group)
        self.sc.setLocalProperty(DESCRIPTION_PROPERTY, self.description)
        self._thread = threading.Thread(target=self._poll, name="activeclean-progress", daemon=True)
        self._thread.start()
        return self

    def _counts(self) -> tuple[int, int, int]:
        """Return (finished tasks, all tasks) of this block's latest Spark job and the number of its jobs.

        A step such as training the dirty model runs one job per pass and
        cannot know how many passes it needs, so the bar follows the latest
        job.  A stage counts once it has started, because a job also lists
        the stages that Spark skips (their output is cached), which never run.
        """
        tracker = self.sc.statusTracker()
        jobs = tracker.getJobIdsForGroup(self.group)
        done = total = 0
        job = tracker.getJobInfo(max(jobs)) if jobs else None
        if job is not None:
            for stage_id in job.stageIds:
                stage = tracker.getStageInfo(stage_id)
                if stage is not None and stage.numActiveTasks + stage.numCompletedTasks + stage.numFailedTasks:
                    done += stage.numCompletedTasks
                    total += stage.numTasks
        return done, total, len(jobs)

    def _show(self) -> None:
        done, total, jobs = self._counts()
        if self._bar is None:
            if not jobs:
                return  # a step that starts no Spark job shows no bar
            from tqdm.auto import tqdm

            # No rate: tasks of different stages take very different times.
            self._bar = tqdm(total=0, desc=self.description, leave=True, dynamic_ncols=True,
                             bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} tasks [{elapsed}{postfix}]")
        self._bar.total = max(total, done)
        self._bar.n = done
        self._bar.set_postfix_str(f"Spark job {jobs}", refresh=False)
        self._bar.refresh()

    def _poll(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._show()
            except Exception:  # noqa: BLE001 - a failed poll must not break the step it watches
                return

    def __exit__(self, *exc_info) -> None:
        if not self.enabled:
            return
        self._stop.set()
        self._thread.join()
        for name, value in self._saved.items():
            self.sc.setLocalProperty(name, value)
        try:
            self._show()
        finally:
            if self._bar is not None:
                self._bar.close()
