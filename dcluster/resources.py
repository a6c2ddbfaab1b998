"""The resource manager: on-demand and spot pools, spot requests, the spot breaker, autoscaling.

Plain code under one lock, persisted to {state_dir}/resources.json after every change (through
dcluster.statefile), alerts included (dcluster.alerts keeps their rules). Times are
epoch seconds (`*_ts`) for arithmetic plus ISO strings for people. One instance runs one job.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from dcluster import policy, statefile
from dcluster.alerts import Alert, AlertBook, iso
from dcluster.config import ClusterConfig
from dcluster.errors import RequestConflict, RequestNotFound
from dcluster.policy import ON_DEMAND, SPOT
from dcluster.providers.base import Market

log = logging.getLogger("dcluster.resources")

OPEN, FULFILLED, FAILED, TIMED_OUT, CANCELLED = "open", "fulfilled", "failed", "timed_out", "cancelled"
IDLE, BUSY = "idle", "busy"
MAX_REQUESTS_KEPT = 5000
REQUEST_RETENTION_S = 7 * 24 * 3600


@dataclass
class Instance:
    """One machine of a pool; it runs at most one job."""

    instance_id: str
    capacity_type: str
    instance_type: str
    price_per_hour: float
    launched_ts: float
    state: str = IDLE
    job_id: str | None = None
    request_id: str | None = None
    resident: bool = False
    idle_since_ts: float | None = None


@dataclass
class SpotRequest:
    """A request for one spot instance, for a job or (job_id None) for the pool."""

    request_id: str
    created_ts: float
    fulfil_ts: float
    max_price: float
    state: str = OPEN
    job_id: str | None = None
    actor: str = "dcluster"
    price: float | None = None
    instance_id: str | None = None
    closed_ts: float | None = None
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON with readable times."""
        data = asdict(self)
        data["created_at"] = iso(self.created_ts)
        data["closed_at"] = iso(self.closed_ts) if self.closed_ts else None
        data["age_s"] = round((self.closed_ts or time.time()) - self.created_ts, 3)
        return data


@dataclass
class _State:
    instances: dict[str, Instance] = field(default_factory=dict)
    requests: dict[str, SpotRequest] = field(default_factory=dict)
    alerts: AlertBook = field(default_factory=AlertBook)
    consecutive_failures: int = 0
    disabled_until_ts: float | None = None
    disabled_reason: str = ""
    last_scale_up_ts: float = 0.0
    last_scale_down_ts: float = 0.0


class ResourceManager:
    """Hands out instances, runs spot requests against the market, and trips the spot breaker."""

    def __init__(
        self, config: ClusterConfig, market: Market, path: Path, clock: Callable[[], float] = time.time
    ) -> None:
        self.config = config
        self.market = market
        self.path = Path(path)
        self.clock = clock
        self._s = _State()
        self._before_fulfil: tuple[str, int] = ("", 0)  # last fulfilled request, failures counted before it
        self._lock = threading.RLock()

    # --- persistence ------------------------------------------------------------------------

    def load(self) -> None:
        """Read the saved state (if any), then make sure the resident on-demand pool exists."""
        with self._lock:
            try:
                raw = json.loads(self.path.read_text(encoding="utf-8"))
                self._s = _State(
                    instances={k: _from(Instance, v) for k, v in raw.get("instances", {}).items()},
                    requests={k: _from(SpotRequest, v) for k, v in raw.get("requests", {}).items()},
                    alerts=AlertBook([_from(Alert, a) for a in raw.get("alerts", [])]),
                    consecutive_failures=int(raw.get("consecutive_failures", 0)),
                    disabled_until_ts=raw.get("disabled_until_ts"),
                    disabled_reason=str(raw.get("disabled_reason", "")),
                    last_scale_up_ts=float(raw.get("last_scale_up_ts", 0.0)),
                    last_scale_down_ts=float(raw.get("last_scale_down_ts", 0.0)),
                )
            except FileNotFoundError:
                log.info("no resource state at %s yet; starting with empty pools", self.path)
            except (OSError, ValueError, TypeError) as exc:
                log.warning("resource state %s unreadable (%s); starting with empty pools", self.path, exc)
            self._ensure_resident(self.clock())
            self._save()

    def _save(self) -> None:
        s = self._s
        doc = {
            "instances": {k: asdict(v) for k, v in s.instances.items()},
            "requests": {k: asdict(v) for k, v in s.requests.items()},
            "alerts": [asdict(a) for a in s.alerts.items],
            "consecutive_failures": s.consecutive_failures,
            "disabled_until_ts": s.disabled_until_ts,
            "disabled_reason": s.disabled_reason,
            "last_scale_up_ts": s.last_scale_up_ts,
            "last_scale_down_ts": s.last_scale_down_ts,
        }
        statefile.write_json(self.path, doc)

    # --- the spot breaker -------------------------------------------------------------------

    def spot_enabled(self, now: float | None = None) -> tuple[bool, str]:
        """Whether spot may be requested now, and why not; a finished cool-down re-enables it."""
        now = self.clock() if now is None else now
        with self._lock:
            if not self.config.spot.enabled:
                return False, "spot disabled in config"
            until = self._s.disabled_until_ts
            if until is None:
                return True, ""
            if now < until:
                return False, f"{self._s.disabled_reason}; retried after {iso(until)}"
            # Cool-down over: try spot again; one more failure trips the breaker at once.
            self._s.disabled_until_ts = None
            self._s.consecutive_failures = max(0, self.config.spot.failure_threshold - 1)
            self._s.alerts.resolve("spot_disabled", now)
            self._save()
            log.info("spot re-enabled after its cool-down")
            return True, ""

    def disable_spot(self, seconds: float, reason: str, now: float | None = None) -> None:
        """Stop requesting spot for `seconds` (the breaker, or an operator's fallback)."""
        now = self.clock() if now is None else now
        with self._lock:
            self._s.disabled_until_ts = now + seconds
            self._s.disabled_reason = reason
            self.raise_alert(
                "spot_disabled", "spot_disabled", f"spot disabled until {iso(now + seconds)}: {reason}", now
            )
            self._save()

    def _failed(self, request: SpotRequest, state: str, reason: str, now: float) -> None:
        request.state, request.reason, request.closed_ts = state, reason, now
        self._s.consecutive_failures += 1
        threshold = self.config.spot.failure_threshold
        if self._s.consecutive_failures >= threshold and self._s.disabled_until_ts is None:
            self.disable_spot(
                self.config.spot.disable_cooldown_s,
                f"{self._s.consecutive_failures} consecutive failed spot requests (last: {reason})",
                now,
            )
        log.info("spot request %s %s: %s", request.request_id, state, reason)

    # --- spot requests ----------------------------------------------------------------------

    def request_spot(
        self,
        *,
        job_id: str | None = None,
        actor: str = "dcluster",
        max_price: float | None = None,
        now: float | None = None,
    ) -> SpotRequest:
        """Open a request for one spot instance; the market may fail or fulfil it at once."""
        now = self.clock() if now is None else now
        with self._lock:
            req = SpotRequest(
                request_id="sir-" + secrets.token_hex(4),
                created_ts=now,
                fulfil_ts=now + self.market.fulfil_delay_s(),
                max_price=self.config.spot.max_price if max_price is None else max_price,
                job_id=job_id,
                actor=actor,
            )
            self._s.requests[req.request_id] = req
            self._advance(req, now)
            self._prune(now)
            self._save()
            return _copy(req)

    def poll_request(self, request_id: str, now: float | None = None) -> SpotRequest:
        """The request after letting the market answer it or the timeout expire."""
        now = self.clock() if now is None else now
        with self._lock:
            req = self._request(request_id)
            if req.state == OPEN:
                self._advance(req, now)
                self._save()
            return _copy(req)

    def _advance(self, req: SpotRequest, now: float) -> None:
        spot = self.config.spot
        timeout_ts = req.created_ts + spot.request_timeout_s
        if req.fulfil_ts <= now and req.fulfil_ts < timeout_ts:
            available, price, why = self.market.spot_quote()
            if not available:
                self._failed(req, FAILED, why or "capacity-not-available", now)
            elif price > req.max_price:
                self._failed(req, FAILED, f"price-too-low: market {price:g} > max {req.max_price:g} $/h", now)
            elif self._count(SPOT) >= spot.max_instances:
                self._failed(req, FAILED, f"spot pool full ({spot.max_instances} instances)", now)
            else:
                inst = self._launch(SPOT, price, now, job_id=req.job_id, request_id=req.request_id)
                req.state, req.price, req.instance_id, req.closed_ts = FULFILLED, price, inst.instance_id, now
                req.reason = f"fulfilled at {price:g} $/h"
                # Kept in case the provider then fails to get the instance (launch_failed counts on from it).
                self._before_fulfil = (req.request_id, self._s.consecutive_failures)
                self._s.consecutive_failures = 0
        elif now >= timeout_ts:
            self._failed(
                req, TIMED_OUT, f"not fulfilled within request_timeout_s={spot.request_timeout_s:g}", now
            )

    def cancel_request(
        self, request_id: str, reason: str = "cancelled on request", now: float | None = None
    ) -> SpotRequest:
        """Close an open request; RequestConflict once it is closed."""
        now = self.clock() if now is None else now
        with self._lock:
            req = self._request(request_id)
            if req.state != OPEN:
                raise RequestConflict(f"spot request {request_id} is already {req.state}; nothing to cancel")
            req.state, req.reason, req.closed_ts = CANCELLED, reason, now
            self._save()
            return _copy(req)

    def history(self, hours: float, now: float | None = None) -> list[SpotRequest]:
        """Requests created in the last `hours`, newest first."""
        now = self.clock() if now is None else now
        with self._lock:
            since = now - hours * 3600
            reqs = [_copy(r) for r in self._s.requests.values() if r.created_ts >= since]
        return sorted(reqs, key=lambda r: (r.created_ts, r.request_id), reverse=True)

    def _request(self, request_id: str) -> SpotRequest:
        req = self._s.requests.get(request_id)
        if req is None:
            raise RequestNotFound(f"spot request {request_id!r} not found")
        return req

    def _prune(self, now: float) -> None:
        reqs = self._s.requests
        old = [k for k, r in reqs.items() if r.state != OPEN and r.created_ts < now - REQUEST_RETENTION_S]
        for k in old:
            del reqs[k]
        while len(reqs) > MAX_REQUESTS_KEPT:
            del reqs[min(reqs, key=lambda k: reqs[k].created_ts)]

    # --- instances --------------------------------------------------------------------------

    def acquire_on_demand(self, job_id: str, now: float | None = None) -> tuple[Instance | None, str]:
        """An on-demand instance for the job (idle one first), or None and why not."""
        now = self.clock() if now is None else now
        with self._lock:
            inst = self._idle(ON_DEMAND)
            if inst is None:
                pool = self.config.on_demand
                if not self.market.on_demand_available():
                    return None, "on-demand launch failed: insufficient capacity"
                if self._count(ON_DEMAND) >= pool.max_instances:
                    return None, f"on-demand pool full ({pool.max_instances} instances busy)"
                inst = self._launch(ON_DEMAND, pool.price_per_hour, now)
            self._bind(inst, job_id)
            self._save()
            return _copy(inst), ""

    def launch_on_demand(self, now: float | None = None) -> tuple[Instance | None, str]:
        """An idle on-demand instance added to the pool (an explicit allocation), or None and why not."""
        now = self.clock() if now is None else now
        with self._lock:
            pool = self.config.on_demand
            if not self.market.on_demand_available():
                return None, "on-demand launch failed: insufficient capacity"
            if self._count(ON_DEMAND) >= pool.max_instances:
                return None, f"on-demand pool full ({pool.max_instances} instances)"
            inst = self._launch(ON_DEMAND, pool.price_per_hour, now)
            self._save()
            return _copy(inst), ""

    def take_idle_spot(self, job_id: str) -> Instance | None:
        """A warm spot instance (from a pool request) for the job, if one is idle."""
        with self._lock:
            inst = self._idle(SPOT)
            if inst is None:
                return None
            self._bind(inst, job_id)
            self._save()
            return _copy(inst)

    def instance(self, instance_id: str) -> Instance | None:
        """A snapshot of one instance, None once released."""
        with self._lock:
            inst = self._s.instances.get(instance_id)
            return _copy(inst) if inst else None

    def release(self, instance_id: str | None, *, reclaimed: bool = False, now: float | None = None) -> None:
        """The job left the instance: on-demand goes back to the pool, spot is given back (or was reclaimed)."""
        now = self.clock() if now is None else now
        with self._lock:
            inst = self._s.instances.get(instance_id or "")
            if inst is None:
                return
            if inst.capacity_type == SPOT or reclaimed:
                # One spot instance per job: keeping it idle would pay for nothing and risk a reclaim.
                del self._s.instances[inst.instance_id]
            else:
                inst.state, inst.job_id, inst.idle_since_ts = IDLE, None, now
            self._save()

    def launch_failed(self, instance_id: str, reason: str, now: float | None = None) -> None:
        """The provider could not get the capacity behind an instance: drop it; a spot one counts as a failed request."""
        now = self.clock() if now is None else now
        with self._lock:
            inst = self._s.instances.pop(instance_id, None)
            req = self._s.requests.get(inst.request_id or "") if inst is not None else None
            if req is not None:
                if self._before_fulfil[0] == req.request_id:
                    self._s.consecutive_failures = self._before_fulfil[1]
                self._failed(req, FAILED, reason, now)  # toward the spot breaker, like a refused request
            self._save()

    def _launch(
        self,
        capacity: str,
        price: float,
        now: float,
        *,
        job_id: str | None = None,
        request_id: str | None = None,
        resident: bool = False,
    ) -> Instance:
        pool_type = (
            self.config.on_demand.instance_type if capacity == ON_DEMAND else self.config.spot.instance_type
        )
        inst = Instance(
            instance_id="i-" + secrets.token_hex(8),
            capacity_type=capacity,
            instance_type=pool_type,
            price_per_hour=price,
            launched_ts=now,
            request_id=request_id,
            resident=resident,
            idle_since_ts=now,
        )
        self._s.instances[inst.instance_id] = inst
        if job_id is not None:
            self._bind(inst, job_id)
        return inst

    def _bind(self, inst: Instance, job_id: str) -> None:
        inst.state, inst.job_id, inst.idle_since_ts = BUSY, job_id, None

    def _idle(self, capacity: str) -> Instance | None:
        idle = [i for i in self._s.instances.values() if i.capacity_type == capacity and i.state == IDLE]
        return min(idle, key=lambda i: i.launched_ts) if idle else None

    def _count(self, capacity: str, state: str | None = None) -> int:
        return sum(
            1
            for i in self._s.instances.values()
            if i.capacity_type == capacity and (state is None or i.state == state)
        )

    def _ensure_resident(self, now: float) -> None:
        pool = self.config.on_demand
        while self._count(ON_DEMAND) < pool.resident_min and self.market.on_demand_available():
            self._launch(ON_DEMAND, pool.price_per_hour, now, resident=True)

    # --- housekeeping -----------------------------------------------------------------------

    def refresh(self, now: float | None = None) -> None:
        """Advance pool requests, re-enable spot after its cool-down, autoscale the on-demand pool."""
        now = self.clock() if now is None else now
        with self._lock:
            self.spot_enabled(now)
            changed = False
            for req in list(self._s.requests.values()):
                if req.state == OPEN and req.job_id is None:
                    self._advance(req, now)
                    changed = changed or req.state != OPEN
            for inst in list(self._s.instances.values()):
                # A warm spot instance nobody used is given back rather than paid for.
                if (
                    inst.capacity_type == SPOT
                    and inst.state == IDLE
                    and now - (inst.idle_since_ts or now) >= self.config.autoscaling.scale_down_cooldown_s
                ):
                    del self._s.instances[inst.instance_id]
                    changed = True
            pool = self.config.on_demand
            step = policy.autoscale(
                busy=self._count(ON_DEMAND, BUSY),
                total=self._count(ON_DEMAND),
                resident_min=pool.resident_min,
                max_instances=pool.max_instances,
                now=now,
                last_up=self._s.last_scale_up_ts,
                last_down=self._s.last_scale_down_ts,
                rules=self.config.autoscaling,
            )
            if step > 0 and self.market.on_demand_available():
                self._launch(ON_DEMAND, pool.price_per_hour, now)
                self._s.last_scale_up_ts = now
                changed = True
            elif step < 0:
                idle = [
                    i for i in self._s.instances.values() if i.capacity_type == ON_DEMAND and i.state == IDLE
                ]
                if idle:
                    del self._s.instances[max(idle, key=lambda i: i.launched_ts).instance_id]
                    self._s.last_scale_down_ts = now
                    changed = True
            if self._count(ON_DEMAND) < pool.resident_min and self.market.on_demand_available():
                self._ensure_resident(now)
                changed = True
            if changed:
                self._save()

    # --- alerts -----------------------------------------------------------------------------

    def raise_alert(self, key: str, kind: str, message: str, now: float | None = None) -> Alert:
        """Open an alert, or count one more occurrence of the open alert with the same key."""
        now = self.clock() if now is None else now
        with self._lock:
            alert = self._s.alerts.raise_(key, kind, message, now)
            self._save()
            return _copy(alert)

    def resolve_alert(self, key: str, now: float | None = None) -> None:
        """Close the open alert with this key, if any."""
        with self._lock:
            if self._s.alerts.resolve(key, self.clock() if now is None else now):
                self._save()

    def alerts(self, open_only: bool = False) -> list[Alert]:
        """Alerts, newest first."""
        with self._lock:
            return [_copy(a) for a in self._s.alerts.listed(open_only)]

    # --- reports ----------------------------------------------------------------------------

    def pools(self) -> dict[str, Any]:
        """Instances per pool and state, with the pool limits."""
        with self._lock:
            return {
                ON_DEMAND: {
                    "busy": self._count(ON_DEMAND, BUSY),
                    "idle": self._count(ON_DEMAND, IDLE),
                    "resident_min": self.config.on_demand.resident_min,
                    "max_instances": self.config.on_demand.max_instances,
                    "price_per_hour": self.config.on_demand.price_per_hour,
                },
                SPOT: {
                    "busy": self._count(SPOT, BUSY),
                    "idle": self._count(SPOT, IDLE),
                    "max_instances": self.config.spot.max_instances,
                    "max_price": self.config.spot.max_price,
                },
            }

    def spot_status(self, now: float | None = None) -> dict[str, Any]:
        """The breaker, the open requests, the pool and the market's current quote."""
        now = self.clock() if now is None else now
        enabled, why = self.spot_enabled(now)
        available, price, reason = self.market.spot_quote()
        with self._lock:
            open_reqs = [r.to_dict() for r in self._s.requests.values() if r.state == OPEN]
            return {
                "enabled": enabled,
                "disabled_reason": why or None,
                "disabled_until": iso(self._s.disabled_until_ts) if self._s.disabled_until_ts else None,
                "consecutive_failures": self._s.consecutive_failures,
                "failure_threshold": self.config.spot.failure_threshold,
                "open_requests": open_reqs,
                "pool": self.pools()[SPOT],
                "market": {
                    "available": available,
                    "price": price,
                    "reason": reason or None,
                    "simulated": getattr(self.market, "simulated", False),
                },
                "config": asdict(self.config.spot),
            }


def _copy(obj: Any) -> Any:
    """A detached copy of a dataclass record."""
    return type(obj)(**asdict(obj))


def _from(cls: type, data: dict[str, Any]) -> Any:
    """A record from its saved JSON, ignoring keys a newer version added."""
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})
