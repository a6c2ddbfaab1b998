"""Capacity sources: where a run's capacity comes from, apart from how its process is launched.

A provider (providers/process.py) pairs the process runner and its launchers (spark-submit,
the python launcher, the resident Spark Connect session, PyFlink, the standalone clusters) with
one capacity source: the simulated market here, or EC2 (providers/aws.py). The provider asks
the source for a lease before it starts a process and gives it back when the run ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dcluster.config import Simulation
from dcluster.models import Job
from dcluster.providers.base import Market
from dcluster.providers.simulation import SimulatedMarket


@dataclass
class Lease:
    """The capacity under one run: the instances bought for it (none on simulated capacity)."""

    job_id: str
    namespace: str
    capacity_type: str
    instance_ids: tuple[str, ...] = ()
    watcher: Any = None  # reads the capacity's own reclaim notice, if it gives one
    last_notice_poll: float = field(default=float("-inf"))


class CapacitySource:
    """The capacity interface; this base is capacity that needs no buying (this host's own)."""

    market: Market
    remote_executors = False  # True: Spark executors run on the lease's hosts, not on this one

    def acquire(self, job: Job) -> Lease:
        """Capacity for the job's next run on job.capacity_type; CapacityUnavailable if there is none."""
        return Lease(job.job_id, job.namespace, job.capacity_type)

    def release(self, lease: Lease) -> None:
        """Give the run's capacity back (it ended, failed to start, or was stopped)."""
        return None

    def environment(self, job: Job) -> dict[str, str]:
        """Variables the job's process gets about its capacity."""
        return {}

    def record(self, lease: Lease) -> dict[str, Any]:
        """What the run record keeps about the lease (read back by readopt after a restart)."""
        return {}

    def readopt(self, job_id: str, info: dict[str, Any]) -> Lease:
        """The lease of a run an earlier service instance started, whose process still lives."""
        return Lease(job_id, str(info.get("namespace") or ""), str(info.get("capacity_type") or ""))

    def abandon(self, job_id: str, info: dict[str, Any]) -> None:
        """A recorded run's process is gone: give back whatever capacity it held."""
        return None

    def notice(self, lease: Lease) -> dict[str, str] | None:
        """The capacity's own reclaim notice for the run ({"action", "time"}), if one came."""
        return None

    def health(self) -> dict[str, Any] | None:
        """The capacity as this source sees it (None: nothing beyond this host)."""
        return None


class SimulatedCapacity(CapacitySource):
    """This host's own capacity, priced and interrupted by the simulated market (`simulation:`)."""

    def __init__(self, simulation: Simulation) -> None:
        self.market = SimulatedMarket(simulation)
