"""The audit log of the services (SPEC §8): who did what to which job, resource or data, as JSON lines.

DCluster records job_submit, job_terminate and the resource actions; the Feature Platform
records data_access on feature reads; both record config_change when they start with settings
that differ from the ones they last ran with (`record_config_change`).
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from fraudcore import atomic

ANONYMOUS = "anonymous"


# Retention is enforced when the log opens and then at most this often, on a write.
PRUNE_EVERY_S = 24 * 3600.0


class AuditLog:
    """Appends one JSON object per action to {state_dir}/audit.jsonl; reads them back filtered.

    Entries older than `retention_days` (SPEC §8: 365) are dropped when the log opens and once
    a day after that; 0 keeps everything.
    """

    def __init__(
        self, path: Path, retention_days: float = 365, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.path = Path(path)
        self.retention_days = float(retention_days)
        self._clock = clock
        self._lock = threading.Lock()
        self._next_prune = 0.0
        self.prune()

    def record(
        self, action: str, actor: str | None, target: str, detail: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Append an entry (flushed before returning, so a crash right after keeps it)."""
        now = self._clock()
        if now >= self._next_prune:
            self.prune()
        at = dt.datetime.fromtimestamp(now, dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        entry = {
            "at": at,
            "action": action,
            "actor": actor or ANONYMOUS,
            "target": target,
            "detail": dict(detail or {}),
        }
        line = json.dumps(entry, sort_keys=True)
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(line + "\n")
        return entry

    def prune(self) -> int:
        """Drop entries older than the retention (the file is rewritten atomically); how many went."""
        now = self._clock()
        self._next_prune = now + PRUNE_EVERY_S
        if self.retention_days <= 0:
            return 0
        cutoff = dt.datetime.fromtimestamp(now, dt.UTC) - dt.timedelta(days=self.retention_days)
        with self._lock:
            try:
                lines = self.path.read_text(encoding="utf-8").splitlines(keepends=True)
            except FileNotFoundError:
                return 0
            kept = [line for line in lines if not _older(line, cutoff)]
            if len(kept) == len(lines):
                return 0
            with atomic.atomic_file(self.path, "w") as fh:
                fh.writelines(kept)
        return len(lines) - len(kept)

    def read(
        self,
        *,
        action: str | None = None,
        actor: str | None = None,
        target: str | None = None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """Matching entries, newest first."""
        with self._lock:
            try:
                lines = self.path.read_text(encoding="utf-8").splitlines()
            except FileNotFoundError:
                return []
        out: list[dict[str, Any]] = []
        for line in reversed(lines):
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a line cut by a crash mid-write is skipped, not fatal
            if (
                (action is None or entry.get("action") == action)
                and (actor is None or entry.get("actor") == actor)
                and (target is None or entry.get("target") == target)
            ):
                out.append(entry)
                if len(out) >= limit:
                    break
        return out


def _older(line: str, cutoff: dt.datetime) -> bool:
    """Whether an entry's time is before the cutoff; a line that does not parse is kept for a person to see."""
    try:
        at = dt.datetime.fromisoformat(json.loads(line)["at"].replace("Z", "+00:00"))
    except (ValueError, KeyError, TypeError, AttributeError):
        return False
    return at < cutoff


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted keys ({"spot": {"max_price": 0.5}} -> {"spot.max_price": 0.5})."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = list(value) if isinstance(value, tuple) else value
    return out


def current_user() -> str:
    """The login name running this process (its uid when it has none)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def operator() -> str:
    """Who started this process: user@host (the actor of a config_change)."""
    return f"{current_user()}@{socket.gethostname()}"


def record_config_change(
    audit: AuditLog, applied_path: Path, config: Mapping[str, Any], *, source: str, actor: str | None = None
) -> dict[str, Any] | None:
    """Record config_change when `config` differs from the one saved at `applied_path`; save it.

    The detail names every changed key with its old and new value (and keys added or removed),
    so the log answers "what changed, when, by whom" without keeping config files around. The
    first start records the whole config as added. Nothing is recorded when it is unchanged.
    """
    current = json.loads(json.dumps(flatten(config), default=str, sort_keys=True))
    try:
        previous = json.loads(Path(applied_path).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        previous = None
    if previous == current:
        return None
    before = previous or {}
    detail = {
        "source": source,
        "first_start": previous is None,
        "changed": {
            k: {"from": before[k], "to": current[k]}
            for k in sorted(before.keys() & current.keys())
            if before[k] != current[k]
        },
        "added": {k: current[k] for k in sorted(current.keys() - before.keys())},
        "removed": sorted(before.keys() - current.keys()),
    }
    entry = audit.record("config_change", actor or operator(), source, detail)
    # Saved after the entry: a crash in between records the change again, never loses it.
    atomic.write_text(Path(applied_path), json.dumps(current, indent=1, sort_keys=True) + "\n")
    return entry
