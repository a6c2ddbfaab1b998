"""Thin client for the DCluster REST service, plus run_job for tasks that wait on a job.

The names below load on first use, so a job that imports only dcluster_client.contract (the
Flink venv has neither tenacity nor the client's other needs) never loads the client.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dcluster_client.client import DClusterClient, DClusterError, DClusterUnavailable, JobSpec, JobStatus
    from dcluster_client.runner import JobFailed, JobTimeout, run_job

_HOME = {
    "DClusterClient": "client",
    "DClusterError": "client",
    "DClusterUnavailable": "client",
    "JobSpec": "client",
    "JobStatus": "client",
    "JobFailed": "runner",
    "JobTimeout": "runner",
    "run_job": "runner",
}

__all__ = [
    "DClusterClient",
    "DClusterError",
    "DClusterUnavailable",
    "JobFailed",
    "JobSpec",
    "JobStatus",
    "JobTimeout",
    "run_job",
]


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"dcluster_client.{_HOME[name]}"), name)
