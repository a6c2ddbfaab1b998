"""Run one job to the end: submit, poll, report progress, and never leave it running on failure."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator

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


class Stopped(BaseException):
    """SIGTERM arrived while waiting; raised so the wait's cleanup terminates the remote job."""


@contextlib.contextmanager
def stop_remote_work_on_sigterm() -> Iterator[None]:
    """Within the block, SIGTERM raises Stopped (so run_job terminates its job); then the process dies of it.

    A process killed by SIGTERM runs no cleanup by default, so the DCluster job it waited on
    would run on with nobody to read its result. Inside this block the signal becomes an
    exception, run_job's cleanup asks DCluster to terminate the job, and on the way out the
    original handler is restored and the signal delivered again, so the process still ends the
    way its sender meant. Outside the main thread (where handlers cannot be set) it does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        raise Stopped("stopped by SIGTERM")

    previous = signal.signal(signal.SIGTERM, stop)
    if previous is None:  # a handler set outside Python: the default is the closest to restore
        previous = signal.SIG_DFL
    try:
        yield
    except Stopped:
        signal.signal(signal.SIGTERM, previous)
        log.warning("SIGTERM: the DCluster job was asked to terminate; exiting")
        os.kill(os.getpid(), signal.SIGTERM)
        raise  # only reached when the restored handler does not end the process
    finally:
        signal.signal(signal.SIGTERM, previous)


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
