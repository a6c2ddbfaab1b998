"""The local provider: each job is a spark-submit, python or PyFlink process on this host.

A pairing (providers/process.py): the process runner, the local launchers (spark-submit in
local mode, the python launcher, the resident Spark session, PyFlink; providers/launchers.py)
and a capacity source, simulated unless one is given (providers/capacity.py).
"""

from __future__ import annotations

from dcluster.providers.capacity import CapacitySource, SimulatedCapacity
from dcluster.providers.launchers import (
    RESIDENT_SESSION,
    SPARK_SUBMIT,
    Launch,
    Launcher,
    PyFlinkLocal,
    PythonLauncher,
    ResidentSession,
    SparkSubmitLocal,
    resident_session_down,
    spark_mode,
)
from dcluster.providers.process import ProcessProvider
from dcluster.providers.runner import EXIT_WRAPPER, AdoptedHandle, LocalHandle
from dcluster.settings import DClusterSettings

__all__ = [
    "EXIT_WRAPPER",
    "RESIDENT_SESSION",
    "SPARK_SUBMIT",
    "AdoptedHandle",
    "Launch",
    "LocalHandle",
    "LocalProvider",
    "local_launchers",
    "resident_session_down",
]


def local_launchers(settings: DClusterSettings, capacity: CapacitySource) -> list[Launcher]:
    """spark-submit (its executors told where the code is when they run on the capacity's hosts),
    the python launcher and PyFlink."""
    return [
        SparkSubmitLocal(settings, remote_executors=capacity.remote_executors),
        PythonLauncher(settings),
        PyFlinkLocal(settings),
    ]


class LocalProvider(ProcessProvider):
    """The local launchers, the resident Spark session among them, on simulated capacity unless one is given."""

    def __init__(self, settings: DClusterSettings, capacity: CapacitySource | None = None) -> None:
        capacity = capacity or SimulatedCapacity(settings.cluster.simulation)
        super().__init__(
            settings,
            local_launchers(settings, capacity),
            capacity,
            name="local",
            resident=ResidentSession(settings),
        )

    @property
    def spark_mode(self) -> bool:
        """True when the launcher is spark-submit; otherwise the python launcher mode is used."""
        return spark_mode(self.settings)
