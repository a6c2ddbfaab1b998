"""Base classes every pipeline task shares: client-day parameters, stage targets, DCluster jobs.

Tasks only wire: parameters, requires(), output(), and a run() that submits one job or calls
one plain function. Run records (duration, status, row counts) are written for every task by
the event handlers at the bottom, which is what MonitorTracker reads.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import luigi

from batch_tasks.config import batch_tasks, dcluster, settings
from batch_tasks.params import ClientParameter, DayParameter
from batch_tasks.targets import StageTarget, listing, raw_is_current
from fraudcore.paths import WorkPaths, done_meta
from pipeline.day import ClientDay

if TYPE_CHECKING:
    from dcluster_client.client import JobSpec

logger = logging.getLogger("luigi-interface")


def run_id() -> str:
    """One id per pipeline invocation, shared by the worker's child processes."""
    return os.environ.setdefault(
        "FRAUDBATCH_RUN_ID", time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]
    )


class ClientDayTask(luigi.Task):
    """A task for one client and one date; its output is its warehouse stage's _DONE marker."""

    client = ClientParameter(description="client name from config/clients.yaml")
    date = DayParameter(description="client-day, YYYY-MM-DD")

    stage: str = ""  # warehouse stage folder this task writes (docs/architecture.md)

    @cached_property
    def day(self) -> ClientDay:
        """The client-day this task works on, resolved once per task from the configured settings."""
        return settings().resolve(self.client, self.date)

    @property
    def paths(self) -> WorkPaths:
        return self.day.paths

    def output(self):
        # Wrapper and external tasks have no stage of their own.
        return StageTarget(self.paths, self.stage, self.current_input) if self.stage else []

    def input_listing(self) -> list:
        """The day's input as listed once in this run (bucket prefix and inbox)."""
        return listing(self.day)

    def current_input(self) -> str | None:
        """Id of the input snapshot the day's stages must be made from; None while raw/ is stale."""
        return raw_is_current(self.paths, self.input_listing)

    def stage_dir(self, name: str | None = None) -> Path:
        return self.paths.stage(name or self.stage)

    def done_meta(self) -> dict:
        """The metadata the stage wrote into its _DONE marker (counts, seconds)."""
        return done_meta(self.paths.stage(self.stage))

    def day_kwargs(self) -> dict:
        return {"client": self.client, "date": self.date}


class SparkJobTask(ClientDayTask):
    """A task whose run() is one Spark job submitted through DCluster and awaited."""

    app: str = ""  # module of jobs/ that spark-submit runs (of jobs/flink/ when engine is "flink")
    engine = "spark"  # spark | flink: the engine DCluster runs the app with
    capacity_class = "normal"  # critical | normal | batch (SPEC §3 task classes)
    strategy = "cost_optimized"

    @property
    def resources(self) -> dict[str, int]:  # type: ignore[override]
        """One slot of the engine's pool: [resources] spark_jobs / flink_jobs in luigi.cfg."""
        return {f"{self.engine}_jobs": 1}

    def job_args(self) -> list[str]:
        args = [
            "--client",
            self.client,
            "--date",
            self.date.isoformat(),
            "--warehouse",
            str(batch_tasks().warehouse_path()),
        ]
        registry = batch_tasks().registry_path()
        if registry:
            args += ["--registry", registry]
        return args

    def priority_class(self) -> str:
        # A critical client's jobs never run on reclaimable capacity.
        return "critical" if self.day.client.priority == "critical" else self.capacity_class

    def job_spec(self) -> JobSpec:
        """The job this task submits; keyed by task_id so a restarted worker re-attaches to it."""
        from dcluster_client.client import JobSpec

        return JobSpec(
            client=self.client,
            env=batch_tasks().env,
            engine=self.engine,
            app=self.app,
            args=self.job_args(),
            priority=self.priority_class(),
            strategy=self.strategy,
            idempotency_key=self.task_id,
        )

    def run(self) -> None:
        from dcluster_client.runner import run_job, stop_remote_work_on_sigterm

        spec = self.job_spec()
        self.set_status_message(f"submitting {self.app} to DCluster")
        with stop_remote_work_on_sigterm():  # a killed worker takes its remote job with it
            status = run_job(
                dcluster().client(),
                spec,
                poll_interval=batch_tasks().poll_interval,
                timeout_s=batch_tasks().timeout,
                on_progress=self._on_progress,
            )
        logger.info("%s: DCluster job %s %s", self.task_id, status.job_id, status.state)

    def _on_progress(self, status, elapsed: float) -> None:
        self.set_status_message(
            f"DCluster job {status.job_id} ({status.namespace}) {status.state} on "
            f"{status.capacity_type or 'pending capacity'}, {elapsed:.0f}s"
            + (f"\n{status.log_tail[-1]}" if status.log_tail else "")
        )
        self.set_progress_percentage({"PENDING": 5, "RUNNING": 50}.get(status.state, 100))


def _rows_from(meta: dict) -> dict[str, int]:
    return {k: int(v) for k, v in meta.items() if isinstance(v, int) and not isinstance(v, bool)}


def _record(task: ClientDayTask, status: str, seconds: float, message: str = "") -> None:
    from storage.model import RunRecord

    rows: dict[str, int] = {}
    if status == "DONE" and task.stage and task.paths.done(task.stage).is_file():
        try:
            rows = _rows_from(task.done_meta())
        except (OSError, ValueError):
            rows = {}
    now_ms = int(time.time() * 1000)
    record = RunRecord(
        client=task.client,
        date=task.date.isoformat(),
        task=task.get_task_family(),
        run_id=run_id(),
        status=status,
        started_ms=now_ms - int(seconds * 1000),
        finished_ms=now_ms,
        duration_s=round(seconds, 3),
        rows=rows,
        message=message[:2000],
    )
    with task.day.tables() as store:
        store.record_run(record)


@ClientDayTask.event_handler(luigi.Event.START)
def _started(task: ClientDayTask) -> None:
    task._started_at = time.monotonic()  # type: ignore[attr-defined]


@ClientDayTask.event_handler(luigi.Event.PROCESSING_TIME)
def _finished(task: ClientDayTask, seconds: float) -> None:
    try:
        _record(task, "DONE", seconds)
    except Exception:  # a monitoring side channel must not fail finished work
        logger.exception("could not record the run of %s", task.task_id)


@ClientDayTask.event_handler(luigi.Event.FAILURE)
def _failed(task: ClientDayTask, exc: BaseException) -> None:
    seconds = time.monotonic() - getattr(task, "_started_at", time.monotonic())
    try:
        _record(task, "FAILED", seconds, f"{type(exc).__name__}: {exc}")
    except Exception:
        logger.exception("could not record the failure of %s", task.task_id)
