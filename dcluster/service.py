"""The DCluster backend: every command and query the API offers, as plain methods.

Validates what the routes parsed, runs commands under the scheduler's lock, writes the audit
log, and answers queries as JSON-ready dicts. It raises the exceptions of dcluster.errors;
the routes turn them into status codes. Build one with an injected provider and clock and
the whole service runs in-process without a socket (tests/unit/test_dcluster_scheduler.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from dcluster import __version__, logs, policy
from dcluster.errors import InvalidRequest, JobConflict, NoSimulatedMarket, SpotDisabled
from dcluster.ledger import cost_report
from dcluster.lifecycle import RunLifecycle
from dcluster.models import PENDING, PRIORITIES, RUNNING, STATES, STRATEGIES, Job, JobStore, validate_spec
from dcluster.policy import CAPACITY_TYPES, ON_DEMAND, SPOT
from dcluster.providers import make_provider
from dcluster.providers.base import Provider
from dcluster.resources import ResourceManager, SpotRequest
from dcluster.scheduler import Scheduler
from dcluster.settings import DClusterSettings
from fraudcore.audit import AuditLog, record_config_change


class DClusterService:
    """Jobs, resources, the simulated market and the audit log behind the HTTP API."""

    def __init__(
        self,
        settings: DClusterSettings,
        *,
        provider: Provider | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings.normalized()
        settings = self.settings
        self.clock = clock
        self.store = JobStore(settings.jobs_dir)
        self.provider = provider or make_provider(settings)
        self.resources = ResourceManager(
            settings.cluster, self.provider.market, Path(settings.state_dir) / "resources.json", clock
        )
        self.audit = AuditLog(
            Path(settings.state_dir) / "audit.jsonl",
            retention_days=settings.audit_retention_days,
            clock=clock,
        )
        self.lifecycle = RunLifecycle(settings, self.store, self.provider, self.resources, self.audit, clock)
        self.scheduler = Scheduler(settings, self.store, self.resources, self.lifecycle, self.audit, clock)

    # --- start and stop -----------------------------------------------------------------

    def open(self) -> None:
        """Load the state files, record a config change, reconcile runs a restart caught (no thread)."""
        running = self.store.load()
        self.resources.load()
        record_config_change(
            self.audit,
            Path(self.settings.state_dir) / "config.applied.json",
            asdict(self.settings),
            source=str(self.settings.config_path or "defaults"),
        )
        with self.scheduler.lock:
            self.lifecycle.recover(running)

    def start(self) -> None:
        """open(), then the scheduler's background thread."""
        self.open()
        self.scheduler.start()

    def stop(self) -> None:
        """Stop the thread and terminate running jobs, so none outlives the service unwatched."""
        self.scheduler.stop()
        with self.scheduler.lock:
            self.lifecycle.terminate_all("service shutting down")

    # --- jobs ---------------------------------------------------------------------------

    def submit(self, payload: Mapping[str, object], actor: str | None = None) -> tuple[Job, bool]:
        """Validate and queue a job (or return the active one with its key); bool = created."""
        spec = validate_spec(payload, project_root=self.settings.project_root, default_env=self.settings.env)
        self.provider.check(spec)
        config = self.settings.cluster
        klass = policy.task_class(spec.priority, spec.env, config)
        planned = SPOT if policy.spot_share(klass, spec.strategy, config) > 0 else ON_DEMAND
        job, created = self.store.submit(spec, task_class=klass, capacity_type=planned)
        self.audit.record(
            "job_submit",
            actor,
            job.job_id,
            {
                "created": created,
                "client": job.client,
                "app": job.app,
                "priority": job.priority,
                "strategy": job.strategy,
                "task_class": job.task_class,
                "idempotency_key": job.idempotency_key,
                "attempts": job.attempts,
            },
        )
        if created:
            self.scheduler.wake()
        return job, created

    def terminate(self, job_id: str, reason: str = "terminated on request", actor: str | None = None) -> Job:
        """Stop a job now; JobConflict if it already finished."""
        with self.scheduler.lock:
            job = self.store.get(job_id)
            if job.is_terminal:
                raise JobConflict(job, f"job {job_id} is already {job.state}; nothing to terminate")
            done = self.lifecycle.terminate(job, reason)
        self.audit.record(
            "job_terminate",
            actor,
            job_id,
            {"reason": reason, "state_before": job.state, "exit_code": done.exit_code},
        )
        return done

    def job(self, job_id: str) -> Job:
        """One job; JobNotFound if unknown."""
        return self.store.get(job_id)

    def job_log(self, job_id: str) -> str:
        """The job's whole log; JobNotFound if unknown."""
        self.store.get(job_id)
        return logs.read_all(self.provider.log_path(job_id))

    def jobs(
        self, *, client: str | None, state: str | None, app: str | None, capacity: str | None, limit: int
    ) -> list[Job]:
        """Matching jobs, newest first; InvalidRequest for an unknown state or capacity."""
        if state is not None and state.upper() not in STATES:
            raise InvalidRequest(f"state {state!r} must be one of {', '.join(STATES)}", {"state": state})
        if capacity is not None and capacity not in CAPACITY_TYPES:
            raise InvalidRequest(
                f"capacity {capacity!r} must be one of {', '.join(CAPACITY_TYPES)}", {"capacity": capacity}
            )
        return self.store.list(
            client=client,
            state=state.upper() if state else None,
            app=app,
            capacity_type=capacity,
            limit=limit,
        )

    def health(self) -> dict[str, Any]:
        """Whether the service is up, its provider, jobs running and waiting, pools, spot and open alerts."""
        counts = self.store.counts()
        enabled, why = self.resources.spot_enabled()
        open_alerts = [a.to_dict() for a in self.resources.alerts(open_only=True)]
        return {
            "status": "degraded" if open_alerts else "ok",
            "provider": self.provider.name,
            "cluster": self.provider.health(),
            "running": counts["RUNNING"] + counts["HANGING"],
            "pending": counts["PENDING"],
            "max_concurrent_jobs": self.settings.max_concurrent_jobs,
            "version": __version__,
            "jobs": counts,
            "pools": self.resources.pools(),
            "spot": {"enabled": enabled, "reason": why or None},
            "alerts": open_alerts,
            "health_check_interval_s": self.settings.cluster.monitor.health_check_interval_s,
        }

    # --- resources ----------------------------------------------------------------------

    def allocate(
        self, count: int, *, priority: str, strategy: str, env: str | None, actor: str | None = None
    ) -> dict[str, Any]:
        """Add `count` instances to the pools, split by the class's spot share (spot via requests)."""
        if priority not in PRIORITIES:
            raise InvalidRequest(f"priority {priority!r} must be one of {', '.join(PRIORITIES)}")
        if strategy not in STRATEGIES:
            raise InvalidRequest(f"strategy {strategy!r} must be one of {', '.join(STRATEGIES)}")
        config = self.settings.cluster
        env = env or self.settings.env
        klass = policy.task_class(priority, env, config)
        target = policy.spot_share(klass, strategy, config)
        instances, requests, problems = [], [], []
        spot_n = od_n = 0
        with self.scheduler.lock:
            enabled, why = self.resources.spot_enabled()
            for _ in range(count):
                choice = policy.choose_capacity(
                    klass=klass,
                    target=target,
                    running_spot=spot_n,
                    running_on_demand=od_n,
                    spot_enabled=enabled,
                    spot_disabled_reason=why,
                    fallback_to_on_demand=config.spot.fallback_to_on_demand,
                )
                if choice.capacity_type == SPOT:
                    spot_n += 1
                    requests.append(self.resources.request_spot(actor=actor or "anonymous").to_dict())
                else:
                    od_n += 1
                    inst, why_not = self.resources.launch_on_demand()
                    if inst is None:
                        problems.append(why_not)
                    else:
                        instances.append(inst.__dict__)
        result = {
            "task_class": klass,
            "strategy": strategy,
            "target_spot_share": target,
            "spot": spot_n,
            "on_demand": od_n,
            "instances": instances,
            "spot_requests": requests,
            "problems": problems,
            "pools": self.resources.pools(),
        }
        self.audit.record(
            "allocate",
            actor,
            "cluster",
            {"count": count, "task_class": klass, "spot": spot_n, "on_demand": od_n, "problems": problems},
        )
        self.scheduler.wake()
        return result

    def spot_request(
        self, count: int, max_price: float | None, actor: str | None = None
    ) -> list[dict[str, Any]]:
        """Open spot requests for the pool; SpotDisabled while the breaker (or an operator) holds spot off."""
        enabled, why = self.resources.spot_enabled()
        if not enabled:
            raise SpotDisabled(f"spot is disabled: {why}", self.resources.spot_status())
        reqs = [
            self.resources.request_spot(actor=actor or "anonymous", max_price=max_price).to_dict()
            for _ in range(count)
        ]
        self.audit.record(
            "spot_request",
            actor,
            ",".join(r["request_id"] for r in reqs),
            {"count": count, "max_price": max_price},
        )
        return reqs

    def spot_cancel(self, request_id: str, actor: str | None = None) -> SpotRequest:
        """Cancel an open spot request (a job waiting on it falls back on the next tick)."""
        req = self.resources.cancel_request(request_id, f"cancelled by {actor or 'anonymous'}")
        self.audit.record("spot_cancel", actor, request_id, {"job_id": req.job_id})
        self.scheduler.wake()
        return req

    def spot_history(self, hours: float) -> dict[str, Any]:
        """Spot requests of the last `hours`, newest first, with counts per outcome."""
        reqs = [r.to_dict() for r in self.resources.history(hours)]
        by_state: dict[str, int] = {}
        for r in reqs:
            by_state[r["state"]] = by_state.get(r["state"], 0) + 1
        return {"hours": hours, "count": len(reqs), "by_state": by_state, "requests": reqs}

    def fallback(
        self,
        job_id: str | None,
        *,
        duration_s: float | None = None,
        reason: str = "",
        actor: str | None = None,
    ) -> dict[str, Any]:
        """Move work off spot: one job (pending: to on-demand; running on spot: migrate), or all new work."""
        reason = reason or "fallback to on-demand on request"
        with self.scheduler.lock:
            if job_id is not None:
                result: dict[str, Any] = {"scope": "job", "job": self._fallback_job(job_id, reason).to_dict()}
            else:
                seconds = self.settings.cluster.spot.disable_cooldown_s if duration_s is None else duration_s
                self.resources.disable_spot(seconds, reason)
                moved = []
                for job in self.store.in_state([PENDING]):
                    if job.spot_request_id:
                        self.lifecycle.cancel_request(job, reason)
                        self.store.update(job.job_id, forced_capacity=ON_DEMAND)
                        moved.append(job.job_id)
                result = {"scope": "cluster", "spot": self.resources.spot_status(), "moved_jobs": moved}
        self.audit.record(
            "spot_fallback", actor, job_id or "cluster", {"reason": reason, "duration_s": duration_s}
        )
        self.scheduler.wake()
        return result

    def _fallback_job(self, job_id: str, reason: str) -> Job:
        job = self.store.get(job_id)
        if job.state == PENDING:
            self.lifecycle.cancel_request(job, reason)
            return self.store.update(
                job_id, forced_capacity=ON_DEMAND, message=f"{reason}; waiting for on-demand capacity"
            )
        if job.state == RUNNING and job.capacity_type == SPOT and not job.runs[-1].get("notice"):
            return self.lifecycle.deliver_notice(job, reason)
        raise JobConflict(
            job,
            f"job {job_id} is {job.state} on {job.capacity_type}; only a "
            "PENDING job or one RUNNING on spot can fall back",
        )

    # --- alerts, costs, audit -----------------------------------------------------------

    def costs(self, client: str | None = None, date: str | None = None) -> dict[str, Any]:
        """Per client and day: run time, spot share, cost, savings against all on-demand, the SPEC formula."""
        return cost_report(
            self.store.all_runs(), self.settings.cluster.on_demand.price_per_hour, client=client, date=date
        )

    def hang_limit(self, app: str) -> tuple[float, str]:
        """Seconds after which a run of `app` is hanging, and how that limit was found."""
        return policy.hang_threshold(
            self.store.durations(app), self.settings.cluster.monitor, self.settings.job_timeout_s
        )

    # --- the simulated market -----------------------------------------------------------

    def market(self) -> Any:
        """The simulated market; NoSimulatedMarket when the provider's capacity is real."""
        market = self.provider.market
        if not getattr(market, "simulated", False):
            raise NoSimulatedMarket(f"the {self.provider.name} provider has no simulated market")
        return market

    def sim_state(self) -> dict[str, Any]:
        """Spot availability, price, fulfilment delay, interruption rate; on-demand availability."""
        return {**self.market().state(), "notice_s": self.settings.cluster.notice_s}

    def sim_spot(self, changes: dict[str, Any], actor: str | None = None) -> dict[str, Any]:
        """Change the simulated spot market; the market after the change."""
        state = self.market().set_spot(**changes)
        self.audit.record("sim_spot", actor, "market", changes)
        self.scheduler.wake()
        return state

    def sim_on_demand(self, available: bool, actor: str | None = None) -> dict[str, Any]:
        """Make simulated on-demand launches succeed or fail; the market after the change."""
        state = self.market().set_on_demand(available)
        self.audit.record("sim_on_demand", actor, "market", {"available": available})
        self.scheduler.wake()
        return state

    def interrupt(self, job_id: str, actor: str | None = None, reason: str = "interruption notice") -> Job:
        """Deliver a spot interruption notice to a job running on spot (the reclaim follows)."""
        self.market()
        with self.scheduler.lock:
            job = self.store.get(job_id)
            if job.state != RUNNING or job.capacity_type != SPOT:
                raise JobConflict(
                    job,
                    f"job {job_id} is {job.state} on {job.capacity_type}; only a job "
                    "RUNNING on spot can be interrupted",
                )
            if job.runs and job.runs[-1].get("notice"):
                raise JobConflict(job, f"job {job_id} already has an interruption notice")
            job = self.lifecycle.deliver_notice(job, reason)
        self.audit.record("spot_interruption", actor, job_id, {"notice": job.runs[-1]["notice"]})
        return job
