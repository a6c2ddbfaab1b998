"""The life cycle of a run: start it, watch it (exit, notice, heartbeat, hang), end it, reschedule its job.

Owns the handles of the runs in flight. Every method is called with the scheduler's lock held
(the loop's tick, or a command of the service), so a run is never watched while being stopped.
Time comes from the injected clock; the provider is the only thing that touches processes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from dcluster import policy
from dcluster.alerts import iso
from dcluster.errors import CapacityUnavailable, InvalidTransition, ProcessLost
from dcluster.logs import ERROR_CONTEXT_LINES, error_line, read_tail
from dcluster.models import (
    COMPLETED,
    FAILED,
    HANGING,
    PENDING,
    RUNNING,
    TERMINATED,
    Job,
    JobStore,
    now_iso,
    parse_iso,
)
from dcluster.policy import ON_DEMAND, SPOT
from dcluster.providers.base import Provider
from dcluster.resources import Instance, ResourceManager
from dcluster.settings import DClusterSettings
from fraudcore.audit import AuditLog

log = logging.getLogger("dcluster.lifecycle")

SERVICE_ACTOR = "dcluster"  # the audit actor of actions the service takes by itself (fallbacks, reschedules)
INTERRUPTED_RUN, LOST_RUN = "INTERRUPTED", "LOST"  # run outcomes that are not job states


@dataclass(frozen=True)
class Launched:
    """What came of starting a run: started, refused by the capacity (nothing ran), or failed to launch."""

    started: bool
    refused: str | None = None  # the capacity's refusal; the job is still PENDING and may be placed again


class RunLifecycle:
    """Starts, watches and ends the runs of jobs on one provider."""

    def __init__(
        self,
        settings: DClusterSettings,
        store: JobStore,
        provider: Provider,
        resources: ResourceManager,
        audit: AuditLog,
        clock: Callable[[], float],
    ) -> None:
        self.settings = settings
        self.config = settings.cluster
        self.store = store
        self.provider = provider
        self.resources = resources
        self.audit = audit
        self.clock = clock
        self._handles: dict[str, Any] = {}
        self._last_health: dict[str, float] = {}

    def running(self) -> list[str]:
        """Ids of the jobs that hold a run (RUNNING or HANGING)."""
        return list(self._handles)

    def _tail(self, job_id: str, lines: int | None = None) -> list[str]:
        return read_tail(
            self.provider.log_path(job_id), self.settings.log_tail_lines if lines is None else lines
        )

    # --- starting -----------------------------------------------------------------------

    def launch(self, job: Job, inst: Instance, now: float) -> Launched:
        """Start a run of the PENDING job on the instance placement gave it."""
        run = {
            "attempt": job.attempts,
            "capacity_type": inst.capacity_type,
            "instance_id": inst.instance_id,
            "instance_type": inst.instance_type,
            "price_per_hour": inst.price_per_hour,
            "request_id": inst.request_id,
            "task_class": job.task_class,
            "started_at": now_iso(),
            "started_ts": now,
            "ended_at": None,
        }
        # The capacity must be on the job before start: the provider passes it to the process.
        planned = job.capacity_type
        job = self.store.update(job.job_id, capacity_type=inst.capacity_type, runs=[*job.runs, run])
        try:
            handle = self.provider.start(job)
        except CapacityUnavailable as exc:
            # Nothing ran: drop the run; placement treats it as a refused request or failed launch.
            self.resources.launch_failed(inst.instance_id, str(exc), now)
            self.store.update(job.job_id, capacity_type=planned, runs=job.runs[:-1])
            return Launched(False, refused=str(exc))
        except OSError as exc:
            self.resources.release(inst.instance_id)
            run.update(
                ended_at=now_iso(),
                ended_ts=now,
                seconds=0.0,
                cost=0.0,
                outcome=FAILED,
                reason=f"could not launch the job: {exc}",
            )
            self.store.transition(
                job.job_id, FAILED, f"could not launch the job: {exc}", runs=[*job.runs[:-1], run]
            )
            return Launched(False)
        run.update(self.provider.process_info(handle))
        self._handles[job.job_id] = handle
        self._last_health[job.job_id] = now
        self.store.transition(
            job.job_id,
            RUNNING,
            f"started on the {self.provider.name} provider ({inst.capacity_type} capacity)",
            runs=[*job.runs[:-1], run],
            forced_capacity=None,
            spot_failures=0,
            spot_request_id=None,
        )
        self.resources.resolve_alert("no_capacity", now)
        return Launched(True)

    # --- watching -----------------------------------------------------------------------

    def check(self, job_id: str, now: float, since: float) -> None:
        """One look at a running job: exit, lost process, notice, reclaim, heartbeat, hang."""
        handle = self._handles[job_id]
        job = self.store.get(job_id)
        run = job.runs[-1] if job.runs else {}
        try:
            code = self.provider.poll(handle)
        except ProcessLost as exc:
            del self._handles[job_id]
            self._end_run(job, LOST_RUN, f"health check failed: {exc}", cause=policy.LOST)
            return
        tail = self._tail(job_id)
        if code is not None:
            del self._handles[job_id]
            self.finish(job, code, tail)
            return
        self.store.set_log_tail(job_id, tail)
        if job.state == HANGING:  # a restart caught it between HANGING and its termination
            self._stop_run(job, HANGING, "terminated as hanging (found after a service restart)", policy.HUNG)
            return
        notice = run.get("notice")
        if notice and now >= float(notice["reclaim_ts"]):
            self._stop_run(
                job,
                INTERRUPTED_RUN,
                "spot instance reclaimed after its interruption notice",
                policy.INTERRUPTED,
                reclaimed=True,
            )
            return
        if job.capacity_type == SPOT and not notice:
            self._look_for_notice(job, handle, since)
        monitor = self.config.monitor
        if now - self._last_health.get(job_id, 0.0) >= monitor.health_check_interval_s:
            self._last_health[job_id] = now
            age = self.provider.heartbeat_age(job_id, now)
            if age is not None and age > monitor.heartbeat_timeout_s:
                self._stop_run(
                    job,
                    LOST_RUN,
                    f"health check failed: heartbeat {age:.1f}s old "
                    f"(heartbeat_timeout_s={monitor.heartbeat_timeout_s:g})",
                    policy.UNHEALTHY,
                )
                return
        started = float(run.get("started_ts") or parse_iso(job.started_at or now_iso()).timestamp())
        elapsed = now - started
        limit, how = policy.hang_threshold(
            self.store.durations(job.app), monitor, self.settings.job_timeout_s
        )
        if elapsed > limit:
            reason = f"running {elapsed:.1f}s, longer than {how}"
            job = self.store.transition(job_id, HANGING, reason)
            self._stop_run(job, HANGING, f"terminated as hanging: {reason}", policy.HUNG)

    def _look_for_notice(self, job: Job, handle: Any, since: float) -> None:
        given = self.provider.interruption_notice(handle)
        if given is not None:
            self.deliver_notice(job, f"instance-action {given['action']} at {given['time']}", given)
            self.audit.record(
                "spot_interruption", SERVICE_ACTOR, job.job_id, {"source": "instance-action", "notice": given}
            )
        elif self.resources.market.interrupted(since):
            self.deliver_notice(job, "the spot market reclaims the instance")
            self.audit.record("spot_interruption", SERVICE_ACTOR, job.job_id, {"source": "market"})

    def finish(self, job: Job, code: int, tail: list[str]) -> None:
        """The run's process ended by itself with `code`."""
        notice = job.runs[-1].get("notice") if job.runs else None
        if code == 0:
            self._end_run(job, COMPLETED, "exit code 0", exit_code=0, tail=tail)
        elif notice:
            self._end_run(
                job,
                INTERRUPTED_RUN,
                f"stopped after a spot interruption notice (exit code {code})",
                exit_code=code,
                tail=tail,
                cause=policy.INTERRUPTED,
                reclaimed=True,
            )
        elif code < 0:
            self._end_run(
                job,
                LOST_RUN,
                f"health check failed: killed by signal {-code} the service did not send",
                exit_code=code,
                tail=tail,
                cause=policy.LOST,
            )
        else:
            context = self._tail(job.job_id, max(ERROR_CONTEXT_LINES, self.settings.log_tail_lines))
            self._end_run(
                job, FAILED, f"exit code {code}", exit_code=code, tail=tail, message=error_line(context, code)
            )

    def deliver_notice(self, job: Job, reason: str, given: Mapping[str, str] | None = None) -> Job:
        """Hand the job a reclaim notice: the one AWS gave (its time is the reclaim) or one due in notice_s."""
        now = self.clock()
        reclaim = now + self.config.notice_s
        notice = {"action": "terminate", "time": iso(reclaim)}
        if given is not None:
            try:
                reclaim = parse_iso(given["time"]).timestamp()
                notice = {"action": given.get("action", "terminate"), "time": given["time"]}
            except (KeyError, ValueError):
                log.warning(
                    "job %s: notice %r has no readable time; reclaim assumed in %gs",
                    job.job_id,
                    given,
                    self.config.notice_s,
                )
        self.provider.notify(job.job_id, notice)
        run = dict(job.runs[-1])
        run["notice"] = {**notice, "received_at": iso(now), "reclaim_ts": reclaim, "reason": reason}
        return self.store.update(
            job.job_id,
            runs=[*job.runs[:-1], run],
            message=f"spot interruption notice: {reason}; reclaimed at {iso(reclaim)}",
        )

    # --- ending -------------------------------------------------------------------------

    def _stop_run(self, job: Job, outcome: str, reason: str, cause: str, *, reclaimed: bool = False) -> None:
        handle = self._handles.pop(job.job_id, None)
        code = (
            self.provider.terminate(handle, self.settings.terminate_grace_s) if handle is not None else None
        )
        self._end_run(
            job,
            outcome,
            reason,
            exit_code=code,
            tail=self._tail(job.job_id),
            cause=cause,
            reclaimed=reclaimed,
        )

    def _close_run(
        self, job: Job, outcome: str, reason: str, exit_code: int | None, reclaimed: bool = False
    ) -> list[dict[str, Any]]:
        """The job's runs with the last one closed (times, cost, outcome); frees its instance."""
        runs = [dict(r) for r in job.runs]
        if not runs or runs[-1].get("ended_at"):
            return runs
        now = self.clock()
        run = runs[-1]
        seconds = max(0.0, now - float(run.get("started_ts") or now))
        run.update(
            ended_at=now_iso(),
            ended_ts=now,
            seconds=round(seconds, 3),
            outcome=outcome,
            reason=reason,
            exit_code=exit_code,
            cost=round(policy.attempt_cost(seconds, float(run["price_per_hour"])), 8),
        )
        self.resources.release(run.get("instance_id"), reclaimed=reclaimed, now=now)
        if outcome == COMPLETED:
            self.store.remember_duration(job.app, seconds)
        return runs

    def _end_run(
        self,
        job: Job,
        outcome: str,
        reason: str,
        *,
        exit_code: int | None = None,
        tail: list[str] | None = None,
        cause: str | None = None,
        message: str | None = None,
        reclaimed: bool = False,
    ) -> Job:
        """Close the run; the job ends with it, or (after a fault) is rescheduled by policy."""
        self._last_health.pop(job.job_id, None)
        runs = self._close_run(job, outcome, reason, exit_code, reclaimed)
        if cause is None:
            self.provider.forget(job.job_id, finished=True)
            return self.store.transition(
                job.job_id, outcome, reason, exit_code=exit_code, message=message, log_tail=tail, runs=runs
            )
        max_attempts = self.config.task_classes[job.task_class].max_attempts
        on_spot = bool(runs) and runs[-1].get("capacity_type") == SPOT
        again, forced = policy.reschedule(
            cause=cause, runs_so_far=len(runs), max_attempts=max_attempts, on_spot=on_spot
        )
        if again:
            self.provider.forget(job.job_id, finished=False)
            where = f" on {forced}" if forced else ""
            note = f"{reason}; rescheduled{where} (run {len(runs) + 1} of at most {max_attempts})"
            self.audit.record("job_reschedule", SERVICE_ACTOR, job.job_id, {"reason": note, "cause": cause})
            return self.store.transition(
                job.job_id,
                PENDING,
                note,
                exit_code=exit_code,
                log_tail=tail,
                runs=runs,
                attempts=job.attempts + 1,
                forced_capacity=forced,
                spot_failures=0,
            )
        self.provider.forget(job.job_id, finished=True)
        final = TERMINATED if cause == policy.HUNG else FAILED
        note = (
            reason
            if max_attempts <= 1
            else f"{reason}; gave up after {len(runs)} runs (max_attempts={max_attempts})"
        )
        return self.store.transition(job.job_id, final, note, exit_code=exit_code, log_tail=tail, runs=runs)

    def cancel_request(self, job: Job, reason: str) -> None:
        """Close the spot request the job waits on, if any."""
        if job.spot_request_id:
            try:
                self.resources.cancel_request(job.spot_request_id, reason)
            except Exception:  # already closed by the market: nothing left to cancel
                log.debug("spot request %s was already closed", job.spot_request_id)
            self.store.update(job.job_id, spot_request_id=None)

    def terminate(self, job: Job, reason: str) -> Job:
        """Kill the job's process if it has one and record TERMINATED."""
        self.cancel_request(job, reason)
        job = self.store.get(job.job_id)
        handle = self._handles.pop(job.job_id, None)
        code = None
        if handle is not None:
            code = self.provider.terminate(handle, self.settings.terminate_grace_s)
        tail = self._tail(job.job_id)
        runs = self._close_run(job, TERMINATED, reason, code)
        self._last_health.pop(job.job_id, None)
        self.provider.forget(job.job_id, finished=True)
        try:
            return self.store.transition(
                job.job_id, TERMINATED, reason, exit_code=code, log_tail=tail, runs=runs
            )
        except InvalidTransition:
            # Only reachable if state changed under us; report the job as it is.
            return self.store.get(job.job_id)

    def terminate_all(self, reason: str) -> None:
        """Terminate every run in flight (service shutdown); one stubborn job does not keep the others alive."""
        for job_id in self.running():
            try:
                self.terminate(self.store.get(job_id), reason)
            except Exception:
                log.exception("could not terminate job %s at shutdown", job_id)

    # --- after a restart ----------------------------------------------------------------

    def recover(self, jobs: list[Job]) -> None:
        """Re-adopt runs whose process still lives; finish or reschedule the rest."""
        for job in jobs:
            run = job.runs[-1] if job.runs and not job.runs[-1].get("ended_at") else None
            handle = self.provider.adopt(job.job_id, run) if run else None
            if handle is not None:
                self._handles[job.job_id] = handle
                self.store.update(
                    job.job_id, message=f"re-adopted after a service restart (pid {run['pid']})"
                )
                log.info("job %s re-adopted (pid %s)", job.job_id, run["pid"])
                continue
            code = self.provider.exit_status(job.job_id) if run else None
            if code is not None:
                self.finish(job, code, self._tail(job.job_id))
                continue
            if run is None:  # written by a version that kept no run records
                job = self.store.update(job.job_id, runs=[*job.runs, self._unrecorded_run(job)])
            self._end_run(
                job,
                LOST_RUN,
                "health check failed after a service restart: process gone without exit status",
                cause=policy.LOST,
            )

    def _unrecorded_run(self, job: Job) -> dict[str, Any]:
        """A run record for a job that was RUNNING without one (so it is counted and costed)."""
        price = (
            self.config.on_demand.price_per_hour
            if job.capacity_type == ON_DEMAND
            else self.config.simulation.spot.price
        )
        started = parse_iso(job.started_at).timestamp() if job.started_at else self.clock()
        return {
            "attempt": job.attempts,
            "capacity_type": job.capacity_type,
            "instance_id": None,
            "instance_type": None,
            "price_per_hour": price,
            "request_id": None,
            "task_class": job.task_class,
            "started_at": job.started_at or now_iso(),
            "started_ts": started,
            "ended_at": None,
        }
