"""Run one job to the end: submit, poll, report progress, and never leave it running on failure."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable

from dcluster_client.client import DClusterClient, JobSpec, JobStatus

log = logging.getLogger("dcluster_client")


class JobFailed(RuntimeError):
    """The job ended FAILED or TERMINATED; status holds the details."""

    def __init__(self, status: JobStatus, log_url: str) -> None:
        code = f"exit code {status.exit_code}" if status.exit_code is not None else "no exit code"
        super().__init__(
            f"DCluster job {status.job_id} ({status.app}) {status.state} with {code}: "
            f"{status.message}; log: GET {log_url}"
        )
        self.status = status


class JobTimeout(RuntimeError):
    """The job was still running at the deadline; it has been asked to terminate."""

    def __init__(self, status: JobStatus, timeout_s: float) -> None:
        super().__init__(
            f"DCluster job {status.job_id} ({status.app}) still {status.state} after {timeout_s:g}s; "
            "terminated it"
        )
        self.status = status


def run_job(
    client: DClusterClient,
    spec: JobSpec,
    *,
    poll_interval: float = 2.0,
    timeout_s: float = 3600,
    on_progress: Callable[[JobStatus, float], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> JobStatus:
    """The COMPLETED status of the job; JobFailed, JobTimeout, or whatever interrupted the wait."""
    status = client.submit(spec)
    started = clock()
    try:
        while True:
            elapsed = clock() - started
            if on_progress is not None:
                on_progress(status, elapsed)
            if status.is_terminal:
                break
            if elapsed >= timeout_s:
                raise JobTimeout(status, timeout_s)
            sleep(poll_interval)
            status = client.status(status.job_id)
    except BaseException:
        # A remote job outlives this process unless stopped here (a leftover run plus a
        # retry would write the same output twice).
        if not status.is_terminal:
            _terminate_quietly(client, status.job_id)
        raise
    if status.state != "COMPLETED":
        raise JobFailed(status, client.log_url(status.job_id))
    return status


def _terminate_quietly(client: DClusterClient, job_id: str) -> None:
    """Ask DCluster to stop the job; a failure is logged so it never hides the original error."""
    try:
        client.terminate(job_id)
    except Exception as exc:  # the caller is already raising the error that matters
        log.warning("could not terminate DCluster job %s: %s", job_id, exc)
