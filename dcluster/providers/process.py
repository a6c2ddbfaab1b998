"""A provider as a pairing: one process runner, the launchers it may start a job with, one capacity source.

The runner (providers/runner.py) is the part every way of starting a job shares: exit file,
heartbeat, notice file, checkpoints, re-adoption by pid and start time. The launchers
(providers/launchers.py, providers/standalone.py) build each run's argv and environment; one is
chosen per job. The capacity source (providers/capacity.py, providers/aws.py) leases what the
run runs on. make_provider (providers/__init__.py) pairs them from the settings.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from dcluster.errors import ProcessLost, UnsupportedJob
from dcluster.models import Job, JobSpec
from dcluster.providers.base import Provider
from dcluster.providers.capacity import CapacitySource
from dcluster.providers.launchers import Launch, Launcher, ResidentSession
from dcluster.providers.runner import AdoptedHandle, LocalHandle, ProcessRunner
from dcluster.settings import DClusterSettings


class ProcessProvider(Provider):
    """Jobs as processes on this host, started by the launcher chosen per job, on leased capacity."""

    def __init__(
        self,
        settings: DClusterSettings,
        launchers: Sequence[Launcher],
        capacity: CapacitySource,
        *,
        name: str,
        resident: ResidentSession | None = None,
        host_env: Mapping[str, str] | None = None,
        engines: Collection[str] | None = None,
        refusal_name: str | None = None,
    ) -> None:
        self.name = name
        self.settings = settings
        self.launchers = list(launchers)  # in the order they are tried; the first that takes the engine wins
        self.resident = resident  # preferred over the spark-submit launcher for the jobs it is eligible for
        self.capacity = capacity
        self.market = capacity.market
        self.runner = ProcessRunner(settings, host_env)
        # The engines accepted at submit: those of the launchers unless narrowed.
        self.engines = frozenset(engines if engines is not None else (x.engine for x in self.launchers))
        self.refusal_name = refusal_name or name  # the provider named when an engine is refused

    # --- choosing a launcher --------------------------------------------------------------

    def launcher_for(self, engine: str) -> Launcher:
        """The launcher that starts jobs of `engine` (the resident session aside).

        A job of an engine no launcher takes (accepted at submit under other settings) starts
        as a Spark job.
        """
        for wanted in (engine, "spark"):
            for launcher in self.launchers:
                if launcher.takes(wanted):
                    return launcher
        raise UnsupportedJob(
            f"{engine.capitalize()} is not supported by the {self.refusal_name} provider yet"
        )

    def choose(self, job: Job) -> tuple[Launcher, str]:
        """The job's launcher and a log note: the resident session if the job is eligible and it answers."""
        direct = self.launcher_for(job.engine)
        if self.resident is None or not self.resident.eligible(job):
            return direct, ""
        down = self.resident.down()
        if down:
            return direct, self.resident.fallback_note(down)
        return self.resident, ""

    def check(self, spec: JobSpec) -> None:
        """The job's engine must be accepted, and its launcher able to start it now."""
        if spec.engine not in self.engines:
            raise UnsupportedJob(
                f"{spec.engine.capitalize()} is not supported by the {self.refusal_name} provider yet"
            )
        self.launcher_for(spec.engine).check(spec)

    def command(self, job: Job) -> list[str]:
        """The argv of the job's launcher (the resident session aside)."""
        return self.launcher_for(job.engine).command(job)

    def environment(self, job: Job) -> dict[str, str]:
        """The job's environment as its launcher (the resident session aside) starts it."""
        return self.launcher_for(job.engine).environment(job, self._base_environment(job))

    def launch(self, job: Job) -> Launch:
        """The run's argv, environment, launcher name and log note."""
        launcher, note = self.choose(job)
        launch = launcher.launch(job, self._base_environment(job))
        return dataclasses.replace(launch, note=note) if note else launch

    def _base_environment(self, job: Job) -> dict[str, str]:
        return self.runner.environment(job, self.capacity.environment(job))

    # --- the run's process ----------------------------------------------------------------

    def start(self, job: Job) -> LocalHandle:
        """Lease the run's capacity, then launch the job in its own process group (output to its log)."""
        lease = self.capacity.acquire(job)
        try:
            self.runner.prepare(job)
            handle = self.runner.spawn(job, self.launch(job))
        except OSError:
            self.capacity.release(lease)
            raise
        handle.lease = lease
        return handle

    def poll(self, handle: LocalHandle | AdoptedHandle) -> int | None:
        """The launcher's exit code once it has ended; ProcessLost if an adopted one left none.

        Either way the run is over, and its capacity is given back.
        """
        try:
            code = self.runner.poll(handle)
        except ProcessLost:
            self._give_back(handle)
            raise
        if code is not None:
            self._give_back(handle)
        return code

    def terminate(self, handle: LocalHandle | AdoptedHandle, grace_s: float) -> int | None:
        """Stop the process group, give the capacity back, then let each launcher end what the job left elsewhere."""
        try:
            code = self.runner.terminate(handle, grace_s)
        finally:
            self._give_back(handle)
        for launcher in self.launchers:
            launcher.stopped(handle.job_id)
        return code

    def _give_back(self, handle: LocalHandle | AdoptedHandle) -> None:
        if handle.lease is not None:
            self.capacity.release(handle.lease)

    def process_info(self, handle: LocalHandle | AdoptedHandle) -> dict[str, Any]:
        """The runner's pid, start time and launcher, and the capacity's record of the lease."""
        info = self.runner.process_info(handle)
        lease = self.capacity.record(handle.lease) if handle.lease is not None else {}
        return {**info, **lease}

    def adopt(self, job_id: str, info: dict[str, Any]) -> AdoptedHandle | None:
        """The recorded process if it still runs (same pid and start time), else None (its capacity given back)."""
        handle = self.runner.adopt(job_id, info)
        if handle is None:
            self.capacity.abandon(job_id, info)
            return None
        handle.lease = self.capacity.readopt(job_id, info)
        return handle

    def interruption_notice(self, handle: LocalHandle | AdoptedHandle) -> dict[str, str] | None:
        """The capacity's own reclaim notice for the run, if it gives them (EC2's instance-action)."""
        return self.capacity.notice(handle.lease) if handle.lease is not None else None

    def health(self) -> dict[str, Any] | None:
        """The capacity's view when it reports one (EC2), else the launchers' (clusters, resident session)."""
        capacity = self.capacity.health()
        if capacity is not None:
            return capacity
        merged: dict[str, Any] = {}
        for launcher in [*([self.resident] if self.resident else []), *self.launchers]:
            merged.update(launcher.health() or {})
        return merged or None

    # --- the runner's files ---------------------------------------------------------------

    def log_path(self, job_id: str) -> Path:
        """{state_dir}/logs/{job_id}.log."""
        return self.runner.log_path(job_id)

    def exit_status(self, job_id: str) -> int | None:
        """The exit code the wrapper wrote when the job's process ended."""
        return self.runner.exit_status(job_id)

    def heartbeat_age(self, job_id: str, now: float) -> float | None:
        """Age of the heartbeat file's mtime."""
        return self.runner.heartbeat_age(job_id, now)

    def notify(self, job_id: str, notice: dict[str, Any]) -> None:
        """Write the notice where the job polls for it."""
        self.runner.notify(job_id, notice)

    def checkpoint_dir(self, job_id: str) -> Path:
        """{state_dir}/checkpoints/{job_id}: kept across attempts, removed when the job ends."""
        return self.runner.checkpoint_dir(job_id)

    def forget(self, job_id: str, *, finished: bool) -> None:
        """Remove the attempt's heartbeat, notice and exit files; checkpoints too once finished."""
        self.runner.forget(job_id, finished=finished)
