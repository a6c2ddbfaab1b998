"""The scheduler loop: each tick watches the runs in flight, then places PENDING jobs on capacity.

`tick()` is plain code driven by the injected clock, so tests call it directly with a fake
clock and provider; `start()` runs it on a background thread every poll_interval_s (or at
once after `wake()`). The lock serialises ticks and the service's commands.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable

from dcluster import policy
from dcluster.alerts import iso
from dcluster.lifecycle import SERVICE_ACTOR, RunLifecycle
from dcluster.models import HANGING, PENDING, RUNNING, Job, JobStore
from dcluster.policy import ON_DEMAND, SPOT
from dcluster.resources import CANCELLED, FULFILLED, OPEN, TIMED_OUT, Instance, ResourceManager
from dcluster.resources import FAILED as REQUEST_FAILED
from dcluster.settings import DClusterSettings
from fraudcore.audit import AuditLog

log = logging.getLogger("dcluster.scheduler")

Mix = Counter[tuple[str, str]]  # running jobs per (task class, capacity type)


class Scheduler:
    """Places pending jobs (task class, strategy, spot requests, the breaker) and ticks the life cycle."""

    def __init__(
        self,
        settings: DClusterSettings,
        store: JobStore,
        resources: ResourceManager,
        lifecycle: RunLifecycle,
        audit: AuditLog,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.config = settings.cluster
        self.store = store
        self.resources = resources
        self.lifecycle = lifecycle
        self.audit = audit
        self.clock = clock
        self._last_tick = clock()
        # Serialises ticks and the service's commands so a job is never polled while being killed.
        self.lock = threading.RLock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- the loop -----------------------------------------------------------------------

    def tick(self) -> None:
        """One pass: watch running jobs (exit, notices, health, hangs), then place pending ones."""
        with self.lock:
            now = self.clock()
            since, self._last_tick = now - self._last_tick, now
            self.resources.refresh(now)
            for job_id in self.lifecycle.running():
                self.lifecycle.check(job_id, now, since)
            self._place_pending(now)

    def wake(self) -> None:
        """Run the next tick now (after a change that may let jobs start or fall back)."""
        self._wake.set()

    def start(self) -> None:
        """Start the background thread."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="dcluster-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the background thread (runs in flight are the life cycle's to end)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=max(5.0, self.settings.poll_interval_s * 5))
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # the loop must survive any single bad tick
                log.exception("scheduler tick failed")
            self._wake.wait(self.settings.poll_interval_s)
            self._wake.clear()

    # --- placing pending jobs -----------------------------------------------------------

    def _place_pending(self, now: float) -> None:
        pending = self.store.in_state([PENDING])
        mix: Mix = Counter((j.task_class, j.capacity_type) for j in self.store.in_state([RUNNING, HANGING]))
        waiting_on_spot = sum(1 for j in pending if j.spot_request_id)
        for job in pending:
            if job.spot_request_id is None:
                # A job with an open spot request already holds a place in the queue's front.
                if len(self.lifecycle.running()) + waiting_on_spot >= self.settings.max_concurrent_jobs:
                    self._waiting(job, "waiting for a free job slot")
                    continue
            had_request = job.spot_request_id is not None
            self._place(job, now, mix)
            waiting_on_spot += (self.store.get(job.job_id).spot_request_id is not None) - had_request

    def _place(self, job: Job, now: float, mix: Mix) -> bool:
        """Try to start one pending job; True if it started."""
        spot_cfg = self.config.spot
        if job.spot_request_id:
            req = self.resources.poll_request(job.spot_request_id, now)
            if req.state == OPEN:
                # No elapsed time in the message: it would rewrite the job file on every tick.
                self._waiting(
                    job,
                    f"waiting for spot request {req.request_id} opened at "
                    f"{iso(req.created_ts)} (timeout {spot_cfg.request_timeout_s:g}s)",
                )
                return False
            job = self.store.update(job.job_id, spot_request_id=None)
            if req.state == FULFILLED:
                inst = self.resources.instance(req.instance_id or "")
                if inst is not None:
                    return self._launch(job, inst, now, mix)
            else:
                job = self._spot_failed(job, req.state, req.reason)
        # Two rounds: a spot failure may switch the job to on-demand within the same tick.
        for _ in range(2):
            target = policy.spot_share(job.task_class, job.strategy, self.config)
            enabled, why = self.resources.spot_enabled(now)
            choice = policy.choose_capacity(
                klass=job.task_class,
                target=target,
                running_spot=mix[(job.task_class, SPOT)],
                running_on_demand=mix[(job.task_class, ON_DEMAND)],
                spot_enabled=enabled,
                spot_disabled_reason=why,
                forced=job.forced_capacity,
                fallback_to_on_demand=spot_cfg.fallback_to_on_demand,
            )
            if choice.capacity_type == ON_DEMAND:
                inst, why_not = self.resources.acquire_on_demand(job.job_id, now)
                if inst is not None:
                    return self._launch(job, inst, now, mix)
                available, _, spot_why = self.resources.market.spot_quote()
                if target > 0 and enabled and available:
                    # On-demand cannot launch but spot can: a cheaper wait-free start beats the queue.
                    choice = policy.Choice(SPOT, f"{why_not}; trying spot")
                else:
                    self._no_capacity(job, why_not, why or spot_why or "spot not allowed for this job", now)
                    return False
            inst = self.resources.take_idle_spot(job.job_id)
            if inst is not None:
                return self._launch(job, inst, now, mix)
            req = self.resources.request_spot(job_id=job.job_id, now=now)
            if req.state == FULFILLED:
                inst = self.resources.instance(req.instance_id or "")
                if inst is not None:
                    return self._launch(job, inst, now, mix)
            if req.state == OPEN:
                self.store.update(job.job_id, spot_request_id=req.request_id)
                self._waiting(job, f"waiting for spot request {req.request_id} ({choice.reason})")
                return False
            job = self._spot_failed(job, req.state, req.reason)
            if job.forced_capacity != ON_DEMAND:
                return False  # retried on the next tick
        return False

    def _launch(self, job: Job, inst: Instance, now: float, mix: Mix) -> bool:
        launched = self.lifecycle.launch(job, inst, now)
        if launched.started:
            mix[(job.task_class, inst.capacity_type)] += 1
        elif launched.refused is not None:
            # Nothing ran: like a refused spot request, or a failed on-demand launch.
            job = self.store.get(job.job_id)
            if inst.capacity_type == SPOT:
                self._spot_failed(job, REQUEST_FAILED, launched.refused)
            else:
                self._no_capacity(job, launched.refused, "not tried for this launch", now)
        return launched.started

    def _spot_failed(self, job: Job, state: str, reason: str) -> Job:
        """Count a failed spot request for the job; fall back to on-demand when the policy says so."""
        failures = job.spot_failures + 1
        spot = self.config.spot
        enabled, why = self.resources.spot_enabled()
        give_up = state in (TIMED_OUT, CANCELLED) or failures >= spot.retry_attempts or not enabled
        if give_up and spot.fallback_to_on_demand and job.task_class != "critical":
            cause = {TIMED_OUT: "spot request timed out", CANCELLED: "spot request cancelled"}.get(
                state, f"spot request failed {failures} time(s)" + (f" and {why}" if not enabled else "")
            )
            message = f"{cause} ({reason}); falling back to on-demand"
            self.audit.record(
                "spot_fallback", SERVICE_ACTOR, job.job_id, {"reason": message, "request_state": state}
            )
            return self.store.update(
                job.job_id, spot_failures=failures, forced_capacity=ON_DEMAND, message=message
            )
        return self.store.update(
            job.job_id,
            spot_failures=failures,
            message=f"spot request {state} ({reason}); retrying ({failures}/{spot.retry_attempts})",
        )

    def _no_capacity(self, job: Job, on_demand_why: str, spot_why: str, now: float) -> None:
        message = f"waiting in queue: no capacity (on-demand: {on_demand_why}; spot: {spot_why})"
        self._waiting(job, message)
        if "pool full" not in on_demand_why:  # a full pool is a queue, not an outage
            self.resources.raise_alert(
                "no_capacity", "no_capacity", f"no capacity at all; jobs wait in the queue ({message})", now
            )

    def _waiting(self, job: Job, message: str) -> None:
        if job.message != message:
            self.store.update(job.job_id, message=message)
