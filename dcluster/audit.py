"""The audit log: who did what to which job or resource, as JSON lines under the state folder."""
from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dcluster.models import now_iso

ANONYMOUS = "anonymous"
SERVICE_ACTOR = "dcluster"  # actions the service takes by itself (fallbacks, reschedules)


class AuditLog:
    """Appends one JSON object per action to {state_dir}/audit.jsonl; reads them back filtered."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def record(self, action: str, actor: str | None, target: str, detail: Mapping[str, Any] | None = None) -> dict:
        """Append an entry (flushed before returning, so a crash right after keeps it)."""
        entry = {"at": now_iso(), "action": action, "actor": actor or ANONYMOUS, "target": target,
                 "detail": dict(detail or {})}
        line = json.dumps(entry, sort_keys=True)
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(line + "\n")
        return entry

    def read(self, *, action: str | None = None, actor: str | None = None, target: str | None = None,
             limit: int = 1000) -> list[dict]:
        """Matching entries, newest first."""
        with self._lock:
            try:
                lines = self.path.read_text(encoding="utf-8").splitlines()
            except FileNotFoundError:
                return []
        out: list[dict] = []
        for line in reversed(lines):
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a line cut by a crash mid-write is skipped, not fatal
            if (action is None or entry.get("action") == action) and (actor is None or entry.get("actor") == actor) \
                    and (target is None or entry.get("target") == target):
                out.append(entry)
                if len(out) >= limit:
                    break
        return out
