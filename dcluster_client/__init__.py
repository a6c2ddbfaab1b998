"""Thin client for the DCluster REST service, plus run_job for tasks that wait on a job."""
from dcluster_client.client import DClusterClient, DClusterError, DClusterUnavailable, JobSpec, JobStatus
from dcluster_client.runner import JobFailed, JobTimeout, run_job

__all__ = [
    "DClusterClient", "DClusterError", "DClusterUnavailable", "JobFailed", "JobSpec", "JobStatus",
    "JobTimeout", "run_job",
]
