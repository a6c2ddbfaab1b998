"""The provider interface: where and how a job's process runs, and what capacity it can get."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Protocol

from dcluster.models import Job, JobSpec


class Market(Protocol):
    """Where capacity comes from: spot quotes and fulfilment, on-demand launches, interruptions."""

    simulated: bool

    def spot_quote(self) -> tuple[bool, float, str]:
        """(available, price per hour, reason when not)."""

    def fulfil_delay_s(self) -> float:
        """Seconds before an open spot request is answered."""

    def on_demand_available(self) -> bool:
        """Whether on-demand launches succeed."""

    def interrupted(self, seconds: float) -> bool:
        """Whether a running spot instance gets an interruption notice within `seconds`."""


class Provider(ABC):
    """Starts, watches and stops job processes; the scheduler owns the life cycle."""

    name: str = "base"
    market: Market

    def check(self, spec: JobSpec) -> None:
        """Raise UnsupportedJob when this provider cannot run the spec (checked at submit)."""
        return None  # a provider that runs every engine needs no check

    @abstractmethod
    def start(self, job: Job) -> Any:
        """Launch the job on job.capacity_type; returns an opaque handle for poll and terminate.

        Raises CapacityUnavailable when that capacity cannot be had, OSError when the process cannot start.
        """

    @abstractmethod
    def poll(self, handle: Any) -> int | None:
        """The exit code once the job's process has ended, else None; ProcessLost if it vanished."""

    @abstractmethod
    def terminate(self, handle: Any, grace_s: float) -> int | None:
        """Stop the job (politely, then by force after grace_s); returns its exit code."""

    @abstractmethod
    def log_path(self, job_id: str) -> Path:
        """File that holds the job's combined stdout and stderr."""

    def process_info(self, handle: Any) -> dict[str, Any]:
        """What identifies the running process after a service restart (recorded in the run)."""
        return {}

    def adopt(self, job_id: str, info: dict[str, Any]) -> Any | None:
        """A handle for a process started by an earlier service instance, or None if it is gone."""
        return None

    def exit_status(self, job_id: str) -> int | None:
        """The exit code the job's last process left behind, if any."""
        return None

    def heartbeat_age(self, job_id: str, now: float) -> float | None:
        """Seconds since the job last touched its heartbeat file; None if it never did."""
        return None

    def interruption_notice(self, handle: Any) -> dict[str, str] | None:
        """The reclaim notice of the spot capacity under a running job ({"action", "time"}), if one came."""
        return None  # capacity without real notices: the market's interrupted() stands in for them

    def notify(self, job_id: str, notice: dict[str, Any]) -> None:
        """Hand a spot interruption notice to the running job (AWS instance-action shape)."""
        return None

    def checkpoint_dir(self, job_id: str) -> Path | None:
        """Folder a job may keep progress in across its attempts."""
        return None

    def health(self) -> dict[str, Any] | None:
        """The compute behind the provider as it sees it (None: nothing beyond this host)."""
        return None

    def forget(self, job_id: str, *, finished: bool) -> None:
        """Drop per-attempt files (and, once the job is finished, its checkpoints)."""
        return None
