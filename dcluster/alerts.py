"""Alerts an operator must see (no capacity, spot disabled): open until resolved, one per key."""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from dataclasses import asdict, dataclass
from typing import Any

log = logging.getLogger("dcluster.alerts")

MAX_ALERTS_KEPT = 500


def iso(ts: float) -> str:
    """Epoch seconds as ISO-8601 UTC with millisecond precision and a Z suffix."""
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Alert:
    """Something an operator must know about; open until resolved."""

    alert_id: str
    key: str
    kind: str
    message: str
    raised_ts: float
    resolved_ts: float | None = None
    count: int = 1

    def to_dict(self) -> dict[str, Any]:
        """JSON with readable times."""
        data = asdict(self)
        data["raised_at"] = iso(self.raised_ts)
        data["resolved_at"] = iso(self.resolved_ts) if self.resolved_ts else None
        data["open"] = self.resolved_ts is None
        return data


class AlertBook:
    """The alerts, oldest first; the caller holds the lock and saves after a change."""

    def __init__(self, alerts: list[Alert] | None = None) -> None:
        self.items: list[Alert] = list(alerts or [])

    def raise_(self, key: str, kind: str, message: str, now: float) -> Alert:
        """Open an alert, or count one more occurrence of the open alert with the same key."""
        for alert in self.items:
            if alert.key == key and alert.resolved_ts is None:
                alert.count += 1
                alert.message = message
                return alert
        alert = Alert(
            alert_id="al-" + secrets.token_hex(4), key=key, kind=kind, message=message, raised_ts=now
        )
        self.items.append(alert)
        del self.items[:-MAX_ALERTS_KEPT]
        log.warning("alert %s: %s", kind, message)
        return alert

    def resolve(self, key: str, now: float) -> bool:
        """Close the open alert with this key; True if there was one."""
        found = False
        for alert in self.items:
            if alert.key == key and alert.resolved_ts is None:
                alert.resolved_ts = now
                found = True
        return found

    def listed(self, open_only: bool = False) -> list[Alert]:
        """Alerts, newest first (the records themselves; the caller copies them out)."""
        out = [a for a in self.items if not open_only or a.resolved_ts is None]
        return sorted(out, key=lambda a: a.raised_ts, reverse=True)
