"""Job state and its rules: spec validation, the life cycle, idempotency and persistence."""

from __future__ import annotations

import builtins
import copy
import datetime as dt
import json
import logging
import re
import secrets
import threading
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from dcluster import statefile
from dcluster.errors import InvalidTransition, JobNotFound, SpecError

log = logging.getLogger("dcluster.jobs")

PENDING, RUNNING, COMPLETED, FAILED, TERMINATED, HANGING = (
    "PENDING",
    "RUNNING",
    "COMPLETED",
    "FAILED",
    "TERMINATED",
    "HANGING",
)
STATES = (PENDING, RUNNING, COMPLETED, FAILED, TERMINATED, HANGING)
TERMINAL_STATES = frozenset({COMPLETED, FAILED, TERMINATED})
ACTIVE_STATES = frozenset({PENDING, RUNNING, HANGING})
# The life cycle of SPEC §3. PENDING -> FAILED is for a job whose process could not be
# launched at all (e.g. a missing launcher): it never ran, so it must not pass RUNNING.
# RUNNING/HANGING -> PENDING is a reschedule: the attempt was ended by a fault (spot reclaim,
# failed health check, hang) and the job waits for capacity again under the same id, so a
# client polling it sees it finish instead of a dead end (docs/adr/0006).
TRANSITIONS: dict[str, frozenset[str]] = {
    PENDING: frozenset({RUNNING, TERMINATED, FAILED}),
    RUNNING: frozenset({COMPLETED, FAILED, TERMINATED, HANGING, PENDING}),
    HANGING: frozenset({TERMINATED, PENDING}),
    COMPLETED: frozenset(),
    FAILED: frozenset(),
    TERMINATED: frozenset(),
}

ENGINES = ("spark", "flink")
PRIORITIES = ("critical", "normal", "batch")
STRATEGIES = ("cost_optimized", "balanced", "performance_optimized")
CLIENT_RE = re.compile(r"^[a-z][a-z0-9_-]{1,31}$")
APP_RE = re.compile(r"^[a-z_]+$")
# env becomes part of a Kubernetes-style namespace, so keep it short and DNS-safe.
ENV_RE = re.compile(r"^[a-z][a-z0-9]{0,15}$")
# Modules of jobs/ that are plumbing, not job entry points.
NOT_APPS = frozenset({"run", "common"})
JOB_DIRS = {"flink": "flink"}  # engine -> folder of its job modules under jobs/ (Spark: jobs/ itself)
MAX_ARGS = 200
DURATION_WINDOW = 50  # completed runs per app kept for the hanging average
MAX_KEY_LEN = 512


def now_iso() -> str:
    """The current UTC time as ISO-8601 with microseconds and a Z suffix."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_iso(value: str) -> dt.datetime:
    """A timestamp written by now_iso() as an aware datetime."""
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass(frozen=True)
class JobSpec:
    """A validated request to run one job."""

    client: str
    env: str
    engine: str
    app: str
    args: tuple[str, ...] = ()
    priority: str = "normal"
    strategy: str = "balanced"
    idempotency_key: str | None = None


def validate_spec(payload: Mapping[str, object], *, project_root: Path, default_env: str) -> JobSpec:
    """A JobSpec from a submitted payload, or SpecError naming every bad field."""
    problems: list[str] = []

    def text(name: str, default: str | None = None) -> str | None:
        value = payload.get(name, default)
        if value is None:
            return None
        if not isinstance(value, str):
            problems.append(f"{name} must be a string, got {type(value).__name__}")
            return None
        return value

    client = text("client")
    if client is None:
        if "client" not in payload or payload.get("client") is None:
            problems.append("client is required")
    elif not CLIENT_RE.fullmatch(client):
        problems.append(f"client {client!r} must match {CLIENT_RE.pattern}")

    env = text("env", default_env) or default_env
    if not ENV_RE.fullmatch(env):
        problems.append(f"env {env!r} must match {ENV_RE.pattern}")

    engine = text("engine", "spark") or "spark"
    if engine not in ENGINES:
        problems.append(f"engine {engine!r} must be one of {', '.join(ENGINES)}")
    job_dir = Path(project_root) / "jobs" / JOB_DIRS.get(engine, "")

    app = text("app")
    if app is None:
        if payload.get("app") is None:
            problems.append("app is required")
    elif not APP_RE.fullmatch(app) or app in NOT_APPS:
        problems.append(f"app {app!r} must match {APP_RE.pattern} and name a job module of jobs/")
    elif not (job_dir / f"{app}.py").is_file():
        problems.append(f"app {app!r} is not a module in {job_dir}")

    raw_args = payload.get("args") or []
    args: tuple[str, ...] = ()
    if not isinstance(raw_args, list | tuple) or not all(isinstance(a, str) for a in raw_args):
        problems.append("args must be a list of strings")
    elif len(raw_args) > MAX_ARGS:
        problems.append(f"args has {len(raw_args)} items; at most {MAX_ARGS} are allowed")
    else:
        args = tuple(raw_args)

    priority = text("priority", "normal") or "normal"
    if priority not in PRIORITIES:
        problems.append(f"priority {priority!r} must be one of {', '.join(PRIORITIES)}")

    strategy = text("strategy", "balanced") or "balanced"
    if strategy not in STRATEGIES:
        problems.append(f"strategy {strategy!r} must be one of {', '.join(STRATEGIES)}")

    key = text("idempotency_key")
    if key is not None and not (0 < len(key) <= MAX_KEY_LEN):
        problems.append(f"idempotency_key must be 1 to {MAX_KEY_LEN} characters")

    if problems:
        raise SpecError(problems)
    return JobSpec(
        client=client or "",
        env=env,
        engine=engine,
        app=app or "",
        args=args,
        priority=priority,
        strategy=strategy,
        idempotency_key=key or None,
    )


def capacity_type_for(priority: str) -> str:
    """Critical work runs on never-reclaimed on-demand capacity; the rest tries spot first."""
    return "on_demand" if priority == "critical" else "spot"


@dataclass
class Job:
    """One submitted job and everything the service knows about it."""

    job_id: str
    namespace: str
    client: str
    env: str
    engine: str
    app: str
    args: list[str]
    priority: str
    strategy: str
    idempotency_key: str | None
    state: str
    capacity_type: str
    attempts: int
    submitted_at: str
    exit_code: int | None = None
    started_at: str | None = None
    finished_at: str | None = None
    transitions: list[dict[str, str]] = field(default_factory=list)
    message: str = ""
    log_tail: list[str] = field(default_factory=list)
    task_class: str = "normal"  # critical | normal | batch | dev (policy.task_class)
    # One record per run of this job: capacity, instance, price, pid, times, cost, outcome.
    runs: list[dict[str, Any]] = field(default_factory=list)
    forced_capacity: str | None = None  # capacity the next run must use (after a spot reclaim)
    spot_request_id: str | None = None  # open spot request the job waits on
    spot_failures: int = 0  # failed spot requests since the job last started

    @property
    def is_terminal(self) -> bool:
        """True once the job can change no more."""
        return self.state in TERMINAL_STATES

    def to_dict(self) -> dict[str, object]:
        """The JSON form used by the API and the state files."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Job:
        """A job from its JSON form; unknown keys are ignored so older services can read newer files."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})  # type: ignore[arg-type]


def new_job(spec: JobSpec, attempts: int = 1, **extra: Any) -> Job:
    """A fresh PENDING job for a spec."""
    job_id = secrets.token_hex(6)
    at = now_iso()
    return Job(
        job_id=job_id,
        namespace=f"s-{spec.env}-{spec.client}-{job_id}",
        client=spec.client,
        env=spec.env,
        engine=spec.engine,
        app=spec.app,
        args=list(spec.args),
        priority=spec.priority,
        strategy=spec.strategy,
        idempotency_key=spec.idempotency_key,
        state=PENDING,
        capacity_type=str(extra.pop("capacity_type", capacity_type_for(spec.priority))),
        attempts=attempts,
        submitted_at=at,
        transitions=[{"state": PENDING, "at": at, "reason": "submitted"}],
        message="waiting for a free job slot",
        **extra,
    )


class JobStore:
    """All jobs in memory, each mirrored to {jobs_dir}/{job_id}.json; thread-safe."""

    def __init__(self, jobs_dir: Path) -> None:
        self._dir = Path(jobs_dir)
        self._jobs: dict[str, Job] = {}
        self._lock = threading.RLock()
        self._durations: dict[str, list[float]] = {}

    def load(self) -> list[Job]:
        """Read every state file; returns the jobs a restart caught RUNNING or HANGING (to reconcile)."""
        self._dir.mkdir(parents=True, exist_ok=True)
        with self._lock:
            for path in sorted(self._dir.glob("*.json")):
                try:
                    job = Job.from_dict(json.loads(path.read_text()))
                except (OSError, ValueError, TypeError) as exc:
                    log.warning("skipping unreadable job state %s: %s", path, exc)
                    continue
                self._jobs[job.job_id] = job
                for run in job.runs:
                    if run.get("outcome") == COMPLETED:
                        self._remember_duration(job.app, float(run.get("seconds") or 0.0))
            return [copy.deepcopy(j) for j in self._jobs.values() if j.state in (RUNNING, HANGING)]

    def durations(self, app: str) -> list[float]:
        """Seconds of the app's most recent completed runs (the hanging rule's sample)."""
        with self._lock:
            return list(self._durations.get(app, []))

    def remember_duration(self, app: str, seconds: float) -> None:
        """Add a completed run's duration to the app's sample."""
        with self._lock:
            self._remember_duration(app, seconds)

    def _remember_duration(self, app: str, seconds: float) -> None:
        # The newest runs say most about today's data volume; keep a bounded window.
        window = self._durations.setdefault(app, [])
        window.append(seconds)
        del window[:-DURATION_WINDOW]

    def submit(self, spec: JobSpec, **extra: Any) -> tuple[Job, bool]:
        """The active job with the spec's idempotency key, or a new PENDING job; bool = created."""
        with self._lock:
            attempts = 0
            if spec.idempotency_key is not None:
                same_key = [j for j in self._jobs.values() if j.idempotency_key == spec.idempotency_key]
                for job in same_key:
                    if job.state in ACTIVE_STATES:
                        return copy.deepcopy(job), False
                attempts = max((j.attempts for j in same_key), default=0)
            job = new_job(spec, attempts=attempts + 1, **extra)
            self._jobs[job.job_id] = job
            self._save(job)
            log.info(
                "job %s submitted: %s %s for %s (attempt %d, key %s)",
                job.job_id,
                job.engine,
                job.app,
                job.client,
                job.attempts,
                job.idempotency_key,
            )
            return copy.deepcopy(job), True

    def get(self, job_id: str) -> Job:
        """A snapshot of one job; JobNotFound if unknown."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                raise JobNotFound(job_id)
            return copy.deepcopy(job)

    def list(
        self,
        *,
        client: str | None = None,
        state: str | None = None,
        app: str | None = None,
        capacity_type: str | None = None,
        limit: int | None = None,
    ) -> list[Job]:
        """Snapshots of matching jobs, newest submission first."""
        with self._lock:
            jobs = [
                j
                for j in self._jobs.values()
                if (client is None or j.client == client)
                and (state is None or j.state == state)
                and (app is None or j.app == app)
                and (capacity_type is None or j.capacity_type == capacity_type)
            ]
            jobs.sort(key=lambda j: (j.submitted_at, j.job_id), reverse=True)
            return [copy.deepcopy(j) for j in jobs[:limit]]

    def in_state(self, states: Iterable[str]) -> builtins.list[Job]:
        """Snapshots of jobs in any of the states: highest priority first, then oldest first."""
        wanted = set(states)
        with self._lock:
            jobs = [j for j in self._jobs.values() if j.state in wanted]
        jobs.sort(key=lambda j: (PRIORITIES.index(j.priority), j.submitted_at, j.job_id))
        return [copy.deepcopy(j) for j in jobs]

    def counts(self) -> dict[str, int]:
        """Number of jobs per state."""
        with self._lock:
            out = dict.fromkeys(STATES, 0)
            for j in self._jobs.values():
                out[j.state] += 1
            return out

    def all_runs(self) -> builtins.list[tuple[Job, dict[str, Any]]]:
        """Every finished run with a snapshot of its job (the cost ledger's rows)."""
        with self._lock:
            return [
                (copy.deepcopy(j), dict(r)) for j in self._jobs.values() for r in j.runs if r.get("ended_at")
            ]

    def update(self, job_id: str, **changes: Any) -> Job:
        """Set fields of a job other than its state, and save."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                raise JobNotFound(job_id)
            if "state" in changes:
                raise ValueError("use transition() to change a job's state")
            for name, value in changes.items():
                setattr(job, name, copy.deepcopy(value))
            self._save(job)
            return copy.deepcopy(job)

    def transition(
        self,
        job_id: str,
        state: str,
        reason: str,
        *,
        exit_code: int | None = None,
        message: str | None = None,
        log_tail: builtins.list[str] | None = None,
        **changes: Any,
    ) -> Job:
        """Move a job to a new state (InvalidTransition if the life cycle forbids it), record and save."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                raise JobNotFound(job_id)
            if state not in TRANSITIONS[job.state]:
                raise InvalidTransition(job_id, job.state, state, TRANSITIONS[job.state])
            at = now_iso()
            previous = job.state
            for name, value in changes.items():
                setattr(job, name, copy.deepcopy(value))
            job.state = state
            job.transitions.append({"state": state, "at": at, "reason": reason})
            job.message = reason if message is None else message
            if state == RUNNING:
                job.started_at = at
            if state in TERMINAL_STATES:
                job.finished_at = at
            if exit_code is not None:
                job.exit_code = exit_code
            if log_tail is not None:
                job.log_tail = list(log_tail)
            self._save(job)
            log.info("job %s %s -> %s: %s", job_id, previous, state, reason)
            return copy.deepcopy(job)

    def set_log_tail(self, job_id: str, tail: builtins.list[str]) -> None:
        """Replace a job's log tail, saving only when it changed."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.log_tail == tail:
                return
            job.log_tail = list(tail)
            self._save(job)

    def _save(self, job: Job) -> None:
        """Write the job's JSON (statefile: a crash never leaves half a file)."""
        statefile.write_json(self._dir / f"{job.job_id}.json", job.to_dict(), indent=1)
