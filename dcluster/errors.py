"""The service's exceptions, one place for every module; the routes map each to a status code."""

from __future__ import annotations

from typing import Any


class SpecError(ValueError):
    """A job spec the service cannot accept; problems lists every reason (422)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class InvalidRequest(ValueError):
    """A request whose values the service rejects (422), with the offending values as detail."""

    def __init__(self, message: str, detail: Any = None) -> None:
        super().__init__(message)
        self.detail = detail


class JobNotFound(LookupError):
    """No job has this id (404)."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id!r} not found")
        self.job_id = job_id


class InvalidTransition(RuntimeError):
    """A state change the life cycle does not allow."""

    def __init__(self, job_id: str, current: str, target: str, allowed: frozenset[str]) -> None:
        names = ", ".join(sorted(allowed)) or "nothing (terminal)"
        super().__init__(f"job {job_id} cannot go from {current} to {target}; allowed: {names}")
        self.job_id, self.current, self.target = job_id, current, target


class JobConflict(RuntimeError):
    """A request that the job's current state forbids (409)."""

    def __init__(self, job: Any, message: str) -> None:
        super().__init__(message)
        self.job = job


class RequestNotFound(LookupError):
    """No spot request has this id (404)."""


class RequestConflict(RuntimeError):
    """The request's state forbids the action (409)."""


class SpotDisabled(RuntimeError):
    """Spot may not be requested now (409); detail is the spot status."""

    def __init__(self, message: str, detail: Any = None) -> None:
        super().__init__(message)
        self.detail = detail


class NoSimulatedMarket(LookupError):
    """The provider's capacity is real, so the simulation endpoints do not exist for it (404)."""


class UnsupportedJob(ValueError):
    """A job spec this provider cannot run (422)."""


class ProcessLost(RuntimeError):
    """The job's process is gone and left no exit status (e.g. its host vanished)."""


class CapacityUnavailable(RuntimeError):
    """The provider could not get the capacity the job was placed on (e.g. EC2 had none); nothing was started."""
