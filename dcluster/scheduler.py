"""The job scheduler and monitor: places PENDING jobs on capacity, watches runs, handles faults."""
from __future__ import annotations

import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from dcluster import policy
from dcluster.models import (
    COMPLETED,
    FAILED,
    HANGING,
    PENDING,
    RUNNING,
    TERMINATED,
    InvalidTransition,
    Job,
    JobStore,
    now_iso,
    parse_iso,
    validate_spec,
)
from dcluster.policy import ON_DEMAND, SPOT
from dcluster.providers.base import CapacityUnavailable, ProcessLost, Provider
from dcluster.resources import CANCELLED, FULFILLED, OPEN, TIMED_OUT, Instance, ResourceManager, iso
from dcluster.resources import FAILED as REQUEST_FAILED
from dcluster.settings import DClusterSettings
from fraudcore.audit import AuditLog

log = logging.getLogger("dcluster.scheduler")

SERVICE_ACTOR = "dcluster"  # the audit actor of actions the service takes by itself (fallbacks, reschedules)

# The last line of a Python traceback: "ValueError: bad", "pyspark.errors....AnalysisException: x".
EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_][\w]*\.)*[A-Za-z_]\w*(?:Error|Exception|Exit|Interrupt)\b(?::.*)?$")
ERROR_WORD = re.compile(r"\b(?:ERROR|FATAL|error:|Error:|Exception:)")
TAIL_READ_BYTES = 64 * 1024
MAX_MESSAGE_CHARS = 500


INTERRUPTED_RUN, LOST_RUN = "INTERRUPTED", "LOST"  # run outcomes that are not job states


class JobConflict(RuntimeError):
    """A request that the job's current state forbids (answered with 409)."""

    def __init__(self, job: Job, message: str) -> None:
        super().__init__(message)
        self.job = job


def read_tail(path: Path, lines: int) -> list[str]:
    """The last `lines` lines of a text file (reads only its end); [] when missing."""
    if lines <= 0:
        return []
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - TAIL_READ_BYTES))
            data = fh.read()
    except FileNotFoundError:
        return []
    text = data.decode("utf-8", errors="replace")
    out = text.splitlines()
    if size > TAIL_READ_BYTES and out:
        out = out[1:]  # the first line was cut by the seek
    return out[-lines:]


def error_line(lines: list[str], exit_code: int | None) -> str:
    """The line of a failed job's log that best says why: exception, then error, then the last."""
    stripped = [ln.strip() for ln in lines if ln.strip()]
    for ln in reversed(stripped):
        if EXCEPTION_LINE.match(ln):
            return ln[:MAX_MESSAGE_CHARS]
    for ln in reversed(stripped):
        if ERROR_WORD.search(ln):
            return ln[:MAX_MESSAGE_CHARS]
    if stripped:
        return stripped[-1][:MAX_MESSAGE_CHARS]
    return f"exited with code {exit_code} and wrote no log"


class Scheduler:
    """Owns job processes: one background thread ticks; API calls submit, terminate and inject faults."""

    def __init__(self, settings: DClusterSettings, store: JobStore, provider: Provider,
                 resources: ResourceManager | None = None, audit: AuditLog | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.config = settings.cluster
        self.store = store
        self.provider = provider
        self.resources = resources or ResourceManager(settings.cluster, provider.market,
                                                      Path(settings.state_dir) / "resources.json", clock)
        self.audit = audit or AuditLog(Path(settings.state_dir) / "audit.jsonl")
        self.clock = clock
        self._handles: dict[str, Any] = {}
        self._last_health: dict[str, float] = {}
        self._last_tick = clock()
        # Serialises ticks and API actions so a job is never polled while being killed.
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- API-facing operations -------------------------------------------------------------

    def submit(self, payload: Mapping[str, object], actor: str | None = None) -> tuple[Job, bool]:
        """Validate and queue a job (or return the active one with its key); bool = created."""
        spec = validate_spec(payload, project_root=self.settings.project_root,
                             default_env=self.settings.env)
        self.provider.check(spec)
        klass = policy.task_class(spec.priority, spec.env, self.config)
        planned = SPOT if policy.spot_share(klass, spec.strategy, self.config) > 0 else ON_DEMAND
        job, created = self.store.submit(spec, task_class=klass, capacity_type=planned)
        self.audit.record("job_submit", actor, job.job_id, {
            "created": created, "client": job.client, "app": job.app, "priority": job.priority,
            "strategy": job.strategy, "task_class": job.task_class, "idempotency_key": job.idempotency_key,
            "attempts": job.attempts})
        if created:
            self._wake.set()
        return job, created

    def terminate(self, job_id: str, reason: str = "terminated on request", actor: str | None = None) -> Job:
        """Stop a job now; JobConflict if it already finished."""
        with self._lock:
            job = self.store.get(job_id)
            if job.is_terminal:
                raise JobConflict(job, f"job {job_id} is already {job.state}; nothing to terminate")
            done = self._terminate_locked(job, reason)
        self.audit.record("job_terminate", actor, job_id, {"reason": reason, "state_before": job.state,
                                                           "exit_code": done.exit_code})
        return done

    def interrupt(self, job_id: str, actor: str | None = None, reason: str = "interruption notice") -> Job:
        """Deliver a spot interruption notice to a job running on spot (the reclaim follows)."""
        with self._lock:
            job = self.store.get(job_id)
            if job.state != RUNNING or job.capacity_type != SPOT:
                raise JobConflict(job, f"job {job_id} is {job.state} on {job.capacity_type}; only a job "
                                       "RUNNING on spot can be interrupted")
            if job.runs and job.runs[-1].get("notice"):
                raise JobConflict(job, f"job {job_id} already has an interruption notice")
            job = self._deliver_notice(job, reason)
        self.audit.record("spot_interruption", actor, job_id, {"notice": job.runs[-1]["notice"]})
        return job

    def fallback(self, job_id: str | None, *, duration_s: float | None = None, reason: str = "",
                 actor: str | None = None) -> dict[str, Any]:
        """Move work off spot: one job (pending: to on-demand; running on spot: migrate), or all new work."""
        reason = reason or "fallback to on-demand on request"
        with self._lock:
            if job_id is not None:
                job = self.store.get(job_id)
                if job.state == PENDING:
                    self._cancel_request(job, reason)
                    job = self.store.update(job_id, forced_capacity=ON_DEMAND,
                                            message=f"{reason}; waiting for on-demand capacity")
                elif job.state == RUNNING and job.capacity_type == SPOT and not job.runs[-1].get("notice"):
                    job = self._deliver_notice(job, reason)
                else:
                    raise JobConflict(job, f"job {job_id} is {job.state} on {job.capacity_type}; only a "
                                           "PENDING job or one RUNNING on spot can fall back")
                result: dict[str, Any] = {"scope": "job", "job": job.to_dict()}
            else:
                seconds = self.config.spot.disable_cooldown_s if duration_s is None else duration_s
                self.resources.disable_spot(seconds, reason)
                moved = []
                for job in self.store.in_state([PENDING]):
                    if job.spot_request_id:
                        self._cancel_request(job, reason)
                        self.store.update(job.job_id, forced_capacity=ON_DEMAND)
                        moved.append(job.job_id)
                result = {"scope": "cluster", "spot": self.resources.spot_status(), "moved_jobs": moved}
        self.audit.record("spot_fallback", actor, job_id or "cluster",
                          {"reason": reason, "duration_s": duration_s})
        self._wake.set()
        return result

    def allocate(self, count: int, *, priority: str, strategy: str, env: str | None,
                 actor: str | None = None) -> dict[str, Any]:
        """Add `count` instances to the pools, split by the class's spot share (spot via requests)."""
        env = env or self.settings.env
        klass = policy.task_class(priority, env, self.config)
        target = policy.spot_share(klass, strategy, self.config)
        instances, requests, problems = [], [], []
        spot_n = od_n = 0
        with self._lock:
            enabled, why = self.resources.spot_enabled()
            for _ in range(count):
                choice = policy.choose_capacity(
                    klass=klass, target=target, running_spot=spot_n, running_on_demand=od_n,
                    spot_enabled=enabled, spot_disabled_reason=why,
                    fallback_to_on_demand=self.config.spot.fallback_to_on_demand)
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
        result = {"task_class": klass, "strategy": strategy, "target_spot_share": target,
                  "spot": spot_n, "on_demand": od_n, "instances": instances, "spot_requests": requests,
                  "problems": problems, "pools": self.resources.pools()}
        self.audit.record("allocate", actor, "cluster", {"count": count, "task_class": klass, "spot": spot_n,
                                                         "on_demand": od_n, "problems": problems})
        self._wake.set()
        return result

    def wake(self) -> None:
        """Run the next tick now (after a change that may let jobs start or fall back)."""
        self._wake.set()

    def running_count(self) -> int:
        """Jobs holding a slot (RUNNING or HANGING)."""
        return len(self._handles)

    # --- the loop ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the background thread."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="dcluster-scheduler", daemon=True)
        self._thread.start()

    def stop(self, terminate_running: bool = True) -> None:
        """Stop the thread; running jobs are terminated so none outlives the service unwatched."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=max(5.0, self.settings.poll_interval_s * 5))
            self._thread = None
        if terminate_running:
            with self._lock:
                for job_id in list(self._handles):
                    try:
                        self._terminate_locked(self.store.get(job_id), "service shutting down")
                    except Exception:  # one stubborn job must not keep the others alive
                        log.exception("could not terminate job %s at shutdown", job_id)

    def recover(self, jobs: list[Job]) -> None:
        """After a restart: re-adopt runs whose process still lives; finish or reschedule the rest."""
        with self._lock:
            for job in jobs:
                run = job.runs[-1] if job.runs and not job.runs[-1].get("ended_at") else None
                handle = self.provider.adopt(job.job_id, run) if run else None
                if handle is not None:
                    self._handles[job.job_id] = handle
                    self.store.update(job.job_id, message=f"re-adopted after a service restart (pid {run['pid']})")
                    log.info("job %s re-adopted (pid %s)", job.job_id, run["pid"])
                    continue
                code = self.provider.exit_status(job.job_id) if run else None
                if code is not None:
                    self._finish(job, code, read_tail(self.provider.log_path(job.job_id),
                                                      self.settings.log_tail_lines))
                else:
                    if run is None:  # written by a version that kept no run records
                        job = self.store.update(job.job_id, runs=[*job.runs, self._unrecorded_run(job)])
                    self._end_run(job, LOST_RUN, "health check failed after a service restart: "
                                  "process gone without exit status", cause=policy.LOST)

    def _unrecorded_run(self, job: Job) -> dict[str, Any]:
        """A run record for a job that was RUNNING without one (so it is counted and costed)."""
        price = (self.config.on_demand.price_per_hour if job.capacity_type == ON_DEMAND
                 else self.config.simulation.spot.price)
        started = parse_iso(job.started_at).timestamp() if job.started_at else self.clock()
        return {"attempt": job.attempts, "capacity_type": job.capacity_type, "instance_id": None,
                "instance_type": None, "price_per_hour": price, "request_id": None, "task_class": job.task_class,
                "started_at": job.started_at or now_iso(), "started_ts": started, "ended_at": None}

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # the loop must survive any single bad tick
                log.exception("scheduler tick failed")
            self._wake.wait(self.settings.poll_interval_s)
            self._wake.clear()

    def tick(self) -> None:
        """One pass: watch running jobs (exit, notices, health, hangs), then place pending ones."""
        with self._lock:
            now = self.clock()
            since, self._last_tick = now - self._last_tick, now
            self.resources.refresh(now)
            for job_id in list(self._handles):
                self._check_running(job_id, now, since)
            self._place_pending(now)

    # --- placing pending jobs ---------------------------------------------------------------

    def _place_pending(self, now: float) -> None:
        pending = self.store.in_state([PENDING])
        mix: Counter[tuple[str, str]] = Counter(
            (j.task_class, j.capacity_type) for j in self.store.in_state([RUNNING, HANGING]))
        waiting_on_spot = sum(1 for j in pending if j.spot_request_id)
        for job in pending:
            if job.spot_request_id is None:
                # A job with an open spot request already holds a place in the queue's front.
                if len(self._handles) + waiting_on_spot >= self.settings.max_concurrent_jobs:
                    self._waiting(job, "waiting for a free job slot")
                    continue
            had_request = job.spot_request_id is not None
            self._place(job, now, mix)
            waiting_on_spot += (self.store.get(job.job_id).spot_request_id is not None) - had_request

    def _place(self, job: Job, now: float, mix: Counter[tuple[str, str]]) -> bool:
        """Try to start one pending job; True if it started."""
        spot_cfg = self.config.spot
        if job.spot_request_id:
            req = self.resources.poll_request(job.spot_request_id, now)
            if req.state == OPEN:
                # No elapsed time in the message: it would rewrite the job file on every tick.
                self._waiting(job, f"waiting for spot request {req.request_id} opened at "
                                   f"{iso(req.created_ts)} (timeout {spot_cfg.request_timeout_s:g}s)")
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
                klass=job.task_class, target=target, running_spot=mix[(job.task_class, SPOT)],
                running_on_demand=mix[(job.task_class, ON_DEMAND)], spot_enabled=enabled,
                spot_disabled_reason=why, forced=job.forced_capacity,
                fallback_to_on_demand=spot_cfg.fallback_to_on_demand)
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

    def _spot_failed(self, job: Job, state: str, reason: str) -> Job:
        """Count a failed spot request for the job; fall back to on-demand when the policy says so."""
        failures = job.spot_failures + 1
        spot = self.config.spot
        enabled, why = self.resources.spot_enabled()
        give_up = state in (TIMED_OUT, CANCELLED) or failures >= spot.retry_attempts or not enabled
        if give_up and spot.fallback_to_on_demand and job.task_class != "critical":
            cause = {TIMED_OUT: "spot request timed out", CANCELLED: "spot request cancelled"}.get(
                state, f"spot request failed {failures} time(s)" + (f" and {why}" if not enabled else ""))
            message = f"{cause} ({reason}); falling back to on-demand"
            self.audit.record("spot_fallback", SERVICE_ACTOR, job.job_id, {"reason": message, "request_state": state})
            return self.store.update(job.job_id, spot_failures=failures, forced_capacity=ON_DEMAND, message=message)
        return self.store.update(job.job_id, spot_failures=failures,
                                 message=f"spot request {state} ({reason}); retrying ({failures}/{spot.retry_attempts})")

    def _no_capacity(self, job: Job, on_demand_why: str, spot_why: str, now: float) -> None:
        message = f"waiting in queue: no capacity (on-demand: {on_demand_why}; spot: {spot_why})"
        self._waiting(job, message)
        if "pool full" not in on_demand_why:  # a full pool is a queue, not an outage
            self.resources.raise_alert("no_capacity", "no_capacity",
                                       f"no capacity at all; jobs wait in the queue ({message})", now)

    def _waiting(self, job: Job, message: str) -> None:
        if job.message != message:
            self.store.update(job.job_id, message=message)

    def _launch(self, job: Job, inst: Instance, now: float, mix: Counter[tuple[str, str]]) -> bool:
        run = {
            "attempt": job.attempts, "capacity_type": inst.capacity_type, "instance_id": inst.instance_id,
            "instance_type": inst.instance_type, "price_per_hour": inst.price_per_hour,
            "request_id": inst.request_id, "task_class": job.task_class, "started_at": now_iso(),
            "started_ts": now, "ended_at": None,
        }
        # The capacity must be on the job before start: the provider passes it to the process.
        planned = job.capacity_type
        job = self.store.update(job.job_id, capacity_type=inst.capacity_type, runs=[*job.runs, run])
        try:
            handle = self.provider.start(job)
        except CapacityUnavailable as exc:
            # Nothing ran: drop the run, and treat it like a refused spot request or a failed on-demand launch.
            self.resources.launch_failed(inst.instance_id, str(exc), now)
            job = self.store.update(job.job_id, capacity_type=planned, runs=job.runs[:-1])
            if inst.capacity_type == SPOT:
                self._spot_failed(job, REQUEST_FAILED, str(exc))
            else:
                self._no_capacity(job, str(exc), "not tried for this launch", now)
            return False
        except OSError as exc:
            self.resources.release(inst.instance_id)
            run.update(ended_at=now_iso(), ended_ts=now, seconds=0.0, cost=0.0, outcome=FAILED,
                       reason=f"could not launch the job: {exc}")
            self.store.transition(job.job_id, FAILED, f"could not launch the job: {exc}",
                                  runs=[*job.runs[:-1], run])
            return False
        run.update(self.provider.process_info(handle))
        self._handles[job.job_id] = handle
        self._last_health[job.job_id] = now
        self.store.transition(
            job.job_id, RUNNING,
            f"started on the {self.provider.name} provider ({inst.capacity_type} capacity)",
            runs=[*job.runs[:-1], run], forced_capacity=None, spot_failures=0, spot_request_id=None,
        )
        self.resources.resolve_alert("no_capacity", now)
        mix[(job.task_class, inst.capacity_type)] += 1
        return True

    # --- watching running jobs --------------------------------------------------------------

    def _check_running(self, job_id: str, now: float, since: float) -> None:
        handle = self._handles[job_id]
        job = self.store.get(job_id)
        run = job.runs[-1] if job.runs else {}
        try:
            code = self.provider.poll(handle)
        except ProcessLost as exc:
            del self._handles[job_id]
            self._end_run(job, LOST_RUN, f"health check failed: {exc}", cause=policy.LOST)
            return
        tail = read_tail(self.provider.log_path(job_id), self.settings.log_tail_lines)
        if code is not None:
            del self._handles[job_id]
            self._finish(job, code, tail)
            return
        self.store.set_log_tail(job_id, tail)
        if job.state == HANGING:  # a restart caught it between HANGING and its termination
            self._stop_run(job, HANGING, "terminated as hanging (found after a service restart)", policy.HUNG)
            return
        notice = run.get("notice")
        if notice and now >= float(notice["reclaim_ts"]):
            self._stop_run(job, INTERRUPTED_RUN, "spot instance reclaimed after its interruption notice",
                           policy.INTERRUPTED, reclaimed=True)
            return
        if job.capacity_type == SPOT and not notice:
            given = self.provider.interruption_notice(handle)
            if given is not None:
                self._deliver_notice(job, f"instance-action {given['action']} at {given['time']}", given)
                self.audit.record("spot_interruption", SERVICE_ACTOR, job_id,
                                  {"source": "instance-action", "notice": given})
            elif self.resources.market.interrupted(since):
                self._deliver_notice(job, "the spot market reclaims the instance")
                self.audit.record("spot_interruption", SERVICE_ACTOR, job_id, {"source": "market"})
        monitor = self.config.monitor
        if now - self._last_health.get(job_id, 0.0) >= monitor.health_check_interval_s:
            self._last_health[job_id] = now
            age = self.provider.heartbeat_age(job_id, now)
            if age is not None and age > monitor.heartbeat_timeout_s:
                self._stop_run(job, LOST_RUN, f"health check failed: heartbeat {age:.1f}s old "
                               f"(heartbeat_timeout_s={monitor.heartbeat_timeout_s:g})", policy.UNHEALTHY)
                return
        started = float(run.get("started_ts") or parse_iso(job.started_at or now_iso()).timestamp())
        elapsed = now - started
        limit, how = policy.hang_threshold(self.store.durations(job.app), monitor, self.settings.job_timeout_s)
        if elapsed > limit:
            reason = f"running {elapsed:.1f}s, longer than {how}"
            job = self.store.transition(job_id, HANGING, reason)
            self._stop_run(job, HANGING, f"terminated as hanging: {reason}", policy.HUNG)

    def _finish(self, job: Job, code: int, tail: list[str]) -> None:
        """The run's process ended by itself with `code`."""
        notice = job.runs[-1].get("notice") if job.runs else None
        if code == 0:
            self._end_run(job, COMPLETED, "exit code 0", exit_code=0, tail=tail)
        elif notice:
            self._end_run(job, INTERRUPTED_RUN, f"stopped after a spot interruption notice (exit code {code})",
                          exit_code=code, tail=tail, cause=policy.INTERRUPTED, reclaimed=True)
        elif code < 0:
            self._end_run(job, LOST_RUN, f"health check failed: killed by signal {-code} the service did not send",
                          exit_code=code, tail=tail, cause=policy.LOST)
        else:
            # Read more than the tail: Spark prints shutdown noise after the Python traceback.
            context = read_tail(self.provider.log_path(job.job_id), max(200, self.settings.log_tail_lines))
            self._end_run(job, FAILED, f"exit code {code}", exit_code=code, tail=tail,
                          message=error_line(context, code))

    def _deliver_notice(self, job: Job, reason: str, given: Mapping[str, str] | None = None) -> Job:
        """Hand the job a reclaim notice: the one AWS gave (its time is the reclaim) or one due in notice_s."""
        now = self.clock()
        reclaim = now + self.config.notice_s
        notice = {"action": "terminate", "time": iso(reclaim)}
        if given is not None:
            try:
                reclaim = parse_iso(given["time"]).timestamp()
                notice = {"action": given.get("action", "terminate"), "time": given["time"]}
            except (KeyError, ValueError):
                log.warning("job %s: notice %r has no readable time; reclaim assumed in %gs",
                            job.job_id, given, self.config.notice_s)
        self.provider.notify(job.job_id, notice)
        run = dict(job.runs[-1])
        run["notice"] = {**notice, "received_at": iso(now), "reclaim_ts": reclaim, "reason": reason}
        return self.store.update(job.job_id, runs=[*job.runs[:-1], run],
                                 message=f"spot interruption notice: {reason}; reclaimed at {iso(reclaim)}")

    def _stop_run(self, job: Job, outcome: str, reason: str, cause: str, *, reclaimed: bool = False) -> None:
        handle = self._handles.pop(job.job_id, None)
        code = self.provider.terminate(handle, self.settings.terminate_grace_s) if handle is not None else None
        tail = read_tail(self.provider.log_path(job.job_id), self.settings.log_tail_lines)
        self._end_run(job, outcome, reason, exit_code=code, tail=tail, cause=cause, reclaimed=reclaimed)

    def _close_run(self, job: Job, outcome: str, reason: str, exit_code: int | None,
                   reclaimed: bool = False) -> list[dict[str, Any]]:
        """The job's runs with the last one closed (times, cost, outcome); frees its instance."""
        runs = [dict(r) for r in job.runs]
        if not runs or runs[-1].get("ended_at"):
            return runs
        now = self.clock()
        run = runs[-1]
        seconds = max(0.0, now - float(run.get("started_ts") or now))
        run.update(ended_at=now_iso(), ended_ts=now, seconds=round(seconds, 3), outcome=outcome, reason=reason,
                   exit_code=exit_code, cost=round(policy.attempt_cost(seconds, float(run["price_per_hour"])), 8))
        self.resources.release(run.get("instance_id"), reclaimed=reclaimed, now=now)
        if outcome == COMPLETED:
            self.store.remember_duration(job.app, seconds)
        return runs

    def _end_run(self, job: Job, outcome: str, reason: str, *, exit_code: int | None = None,
                 tail: list[str] | None = None, cause: str | None = None, message: str | None = None,
                 reclaimed: bool = False) -> Job:
        """Close the run; the job ends with it, or (after a fault) is rescheduled by policy."""
        self._last_health.pop(job.job_id, None)
        runs = self._close_run(job, outcome, reason, exit_code, reclaimed)
        if cause is None:
            self.provider.forget(job.job_id, finished=True)
            return self.store.transition(job.job_id, outcome, reason, exit_code=exit_code, message=message,
                                         log_tail=tail, runs=runs)
        max_attempts = self.config.task_classes[job.task_class].max_attempts
        on_spot = bool(runs) and runs[-1].get("capacity_type") == SPOT
        again, forced = policy.reschedule(cause=cause, runs_so_far=len(runs), max_attempts=max_attempts,
                                          on_spot=on_spot)
        if again:
            self.provider.forget(job.job_id, finished=False)
            where = f" on {forced}" if forced else ""
            note = f"{reason}; rescheduled{where} (run {len(runs) + 1} of at most {max_attempts})"
            self.audit.record("job_reschedule", SERVICE_ACTOR, job.job_id, {"reason": note, "cause": cause})
            return self.store.transition(job.job_id, PENDING, note, exit_code=exit_code, log_tail=tail, runs=runs,
                                         attempts=job.attempts + 1, forced_capacity=forced, spot_failures=0)
        self.provider.forget(job.job_id, finished=True)
        final = TERMINATED if cause == policy.HUNG else FAILED
        note = reason if max_attempts <= 1 else f"{reason}; gave up after {len(runs)} runs (max_attempts={max_attempts})"
        return self.store.transition(job.job_id, final, note, exit_code=exit_code, log_tail=tail, runs=runs)

    def _cancel_request(self, job: Job, reason: str) -> None:
        if job.spot_request_id:
            try:
                self.resources.cancel_request(job.spot_request_id, reason)
            except Exception:  # already closed by the market: nothing left to cancel
                log.debug("spot request %s was already closed", job.spot_request_id)
            self.store.update(job.job_id, spot_request_id=None)

    def _terminate_locked(self, job: Job, reason: str) -> Job:
        """Kill the job's process if it has one and record TERMINATED; caller holds the lock."""
        self._cancel_request(job, reason)
        job = self.store.get(job.job_id)
        handle = self._handles.pop(job.job_id, None)
        code = None
        if handle is not None:
            code = self.provider.terminate(handle, self.settings.terminate_grace_s)
        tail = read_tail(self.provider.log_path(job.job_id), self.settings.log_tail_lines)
        runs = self._close_run(job, TERMINATED, reason, code)
        self._last_health.pop(job.job_id, None)
        self.provider.forget(job.job_id, finished=True)
        try:
            return self.store.transition(job.job_id, TERMINATED, reason, exit_code=code, log_tail=tail, runs=runs)
        except InvalidTransition:
            # Only reachable if state changed under us; report the job as it is.
            return self.store.get(job.job_id)
