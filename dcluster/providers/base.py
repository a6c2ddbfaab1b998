"""The provider interface: where and how a job's process runs."""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from dcluster.models import Job, JobSpec


class UnsupportedJob(ValueError):
    """A job spec this provider cannot run (answered with 422)."""


class Provider(ABC):
    """Starts, watches and stops job processes; the scheduler owns the life cycle."""

    name: str = "base"

    def check(self, spec: JobSpec) -> None:
        """Raise UnsupportedJob when this provider cannot run the spec (checked at submit)."""
        return None  # a provider that runs every engine needs no check

    @abstractmethod
    def start(self, job: Job) -> Any:
        """Launch the job; returns an opaque handle for poll and terminate."""

    @abstractmethod
    def poll(self, handle: Any) -> int | None:
        """The exit code once the job's process has ended, else None."""

    @abstractmethod
    def terminate(self, handle: Any, grace_s: float) -> int | None:
        """Stop the job (politely, then by force after grace_s); returns its exit code."""

    @abstractmethod
    def log_path(self, job_id: str) -> Path:
        """File that holds the job's combined stdout and stderr."""
