"""The job scheduler: admits submissions, starts PENDING jobs, watches and stops running ones."""
from __future__ import annotations

import datetime as dt
import logging
import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dcluster.models import (
    COMPLETED,
    FAILED,
    HANGING,
    PENDING,
    RUNNING,
    TERMINATED,
    InvalidTransition,
    Job,
    JobStore,
    parse_iso,
    validate_spec,
)
from dcluster.providers.base import Provider
from dcluster.settings import DClusterSettings

log = logging.getLogger("dcluster.scheduler")

# The last line of a Python traceback: "ValueError: bad", "pyspark.errors....AnalysisException: x".
EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_][\w]*\.)*[A-Za-z_]\w*(?:Error|Exception|Exit|Interrupt)\b(?::.*)?$")
ERROR_WORD = re.compile(r"\b(?:ERROR|FATAL|error:|Error:|Exception:)")
TAIL_READ_BYTES = 64 * 1024
MAX_MESSAGE_CHARS = 500


class JobConflict(RuntimeError):
    """A request that the job's current state forbids (answered with 409)."""

    def __init__(self, job: Job, message: str) -> None:
        super().__init__(message)
        self.job = job


def read_tail(path: Path, lines: int) -> list[str]:
    """The last `lines` lines of a text file (reads only its end); [] when missing."""
    if lines <= 0:
        return []
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - TAIL_READ_BYTES))
            data = fh.read()
    except FileNotFoundError:
        return []
    text = data.decode("utf-8", errors="replace")
    out = text.splitlines()
    if size > TAIL_READ_BYTES and out:
        out = out[1:]  # the first line was cut by the seek
    return out[-lines:]


def error_line(lines: list[str], exit_code: int | None) -> str:
    """The line of a failed job's log that best says why: exception, then error, then the last."""
    stripped = [ln.strip() for ln in lines if ln.strip()]
    for ln in reversed(stripped):
        if EXCEPTION_LINE.match(ln):
            return ln[:MAX_MESSAGE_CHARS]
    for ln in reversed(stripped):
        if ERROR_WORD.search(ln):
            return ln[:MAX_MESSAGE_CHARS]
    if stripped:
        return stripped[-1][:MAX_MESSAGE_CHARS]
    return f"exited with code {exit_code} and wrote no log"


class Scheduler:
    """Owns job processes: one background thread ticks; API calls submit and terminate."""

    def __init__(self, settings: DClusterSettings, store: JobStore, provider: Provider) -> None:
        self.settings = settings
        self.store = store
        self.provider = provider
        self._handles: dict[str, Any] = {}
        # Serialises ticks and terminations so a job is never polled while being killed.
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- API-facing operations -------------------------------------------------------------

    def submit(self, payload: Mapping[str, object]) -> tuple[Job, bool]:
        """Validate and queue a job (or return the active one with its key); bool = created."""
        spec = validate_spec(payload, project_root=self.settings.project_root,
                             default_env=self.settings.env)
        self.provider.check(spec)
        job, created = self.store.submit(spec)
        if created:
            self._wake.set()
        return job, created

    def terminate(self, job_id: str, reason: str = "terminated on request") -> Job:
        """Stop a job now; JobConflict if it already finished."""
        with self._lock:
            job = self.store.get(job_id)
            if job.is_terminal:
                raise JobConflict(job, f"job {job_id} is already {job.state}; nothing to terminate")
            return self._terminate_locked(job, reason)

    def running_count(self) -> int:
        """Jobs holding a slot (RUNNING or HANGING)."""
        return len(self._handles)

    # --- the loop ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the background thread."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="dcluster-scheduler", daemon=True)
        self._thread.start()

    def stop(self, terminate_running: bool = True) -> None:
        """Stop the thread; running jobs are terminated so none outlives the service unwatched."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=max(5.0, self.settings.poll_interval_s * 5))
            self._thread = None
        if terminate_running:
            with self._lock:
                for job_id in list(self._handles):
                    try:
                        self._terminate_locked(self.store.get(job_id), "service shutting down")
                    except Exception:  # one stubborn job must not keep the others alive
                        log.exception("could not terminate job %s at shutdown", job_id)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # the loop must survive any single bad tick
                log.exception("scheduler tick failed")
            self._wake.wait(self.settings.poll_interval_s)
            self._wake.clear()

    def tick(self) -> None:
        """One pass: finish ended jobs, stop hanging ones, start pending ones into free slots."""
        with self._lock:
            for job_id in list(self._handles):
                self._check_running(job_id)
            free = self.settings.max_concurrent_jobs - len(self._handles)
            if free > 0:
                for job in self.store.in_state([PENDING])[:free]:
                    self._start(job)

    def _start(self, job: Job) -> None:
        try:
            handle = self.provider.start(job)
        except OSError as exc:
            self.store.transition(job.job_id, FAILED, f"could not launch the job: {exc}")
            return
        self._handles[job.job_id] = handle
        self.store.transition(
            job.job_id, RUNNING,
            f"started on the {self.provider.name} provider ({job.capacity_type} capacity)",
        )

    def _check_running(self, job_id: str) -> None:
        handle = self._handles[job_id]
        job = self.store.get(job_id)
        code = self.provider.poll(handle)
        tail = read_tail(self.provider.log_path(job_id), self.settings.log_tail_lines)
        if code is not None:
            del self._handles[job_id]
            if code == 0:
                self.store.transition(job_id, COMPLETED, "exit code 0", exit_code=0, log_tail=tail)
            else:
                # Read more than the tail: Spark prints shutdown noise after the Python traceback.
                context = read_tail(self.provider.log_path(job_id), max(200, self.settings.log_tail_lines))
                self.store.transition(
                    job_id, FAILED, f"exit code {code}", exit_code=code,
                    message=error_line(context, code), log_tail=tail,
                )
            return
        self.store.set_log_tail(job_id, tail)
        if job.state == RUNNING and job.started_at:
            elapsed = (dt.datetime.now(dt.UTC) - parse_iso(job.started_at)).total_seconds()
            if elapsed > self.settings.job_timeout_s:
                reason = (f"running {elapsed:.1f}s, longer than job_timeout_s="
                          f"{self.settings.job_timeout_s:g}")
                job = self.store.transition(job_id, HANGING, reason)
                self._terminate_locked(job, f"terminated as hanging: {reason}")

    def _terminate_locked(self, job: Job, reason: str) -> Job:
        """Kill the job's process if it has one and record TERMINATED; caller holds the lock."""
        handle = self._handles.pop(job.job_id, None)
        code = None
        if handle is not None:
            code = self.provider.terminate(handle, self.settings.terminate_grace_s)
        tail = read_tail(self.provider.log_path(job.job_id), self.settings.log_tail_lines)
        try:
            return self.store.transition(job.job_id, TERMINATED, reason, exit_code=code, log_tail=tail)
        except InvalidTransition:
            # Only reachable if state changed under us; report the job as it is.
            return self.store.get(job.job_id)
