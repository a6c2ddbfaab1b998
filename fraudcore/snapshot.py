"""The input snapshot of a client-day, and when the day is final.

A client-day's input is every object under ``rawdata/{client}/{date}/`` in the client's bucket,
plus the records other days' files carried for it (the warehouse inbox, ``inbox/from-{date}/``).
The snapshot is that listing as (key, size, version) entries; its id is a digest of them. The
raw/ stage records the snapshot it copied, and every later stage records the id it was made
from, so a listing that differs from the fetched snapshot makes the day *stale*: the next run
fetches what changed and re-derives the stages after it.

A day is *provisional* until it closes: at the end of the client's local day plus the client's
``close_after``, or as soon as the client writes its ``ready_marker`` (``_READY``). Files that
land after the close are still read (nothing is lost); the day's results then get a new version.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from fraudcore.clients import ClientConfig

# Entries that do not come from the bucket start with "@", which no client key of ours does.
INBOX = "@inbox/"  # one entry per warehouse inbox/from-{date}/ folder
CLOSED = "@closed"  # present once the close time has passed, so closing changes the snapshot


@dataclass(frozen=True, order=True)
class InputFile:
    """One input object: key relative to the day's prefix, size, version (ETag, mtime or digest)."""

    key: str
    size: int
    version: str = ""

    @property
    def from_bucket(self) -> bool:
        return not self.key.startswith("@")


def snapshot_id(files: Iterable[InputFile]) -> str:
    """Digest of a listing; the same files give the same id whatever their order."""
    doc = json.dumps([[f.key, f.size, f.version] for f in sorted(files)], separators=(",", ":"))
    return "sha256:" + hashlib.sha256(doc.encode("utf-8")).hexdigest()[:32]


def to_doc(files: Iterable[InputFile]) -> list[dict[str, Any]]:
    """The snapshot as stored in raw/_DONE."""
    return [asdict(f) for f in sorted(files)]


def from_doc(doc: Iterable[dict[str, Any]] | None) -> list[InputFile]:
    return sorted(InputFile(d["key"], int(d["size"]), str(d.get("version", ""))) for d in doc or ())


@dataclass(frozen=True)
class Changes:
    """What a fresh listing has that the fetched snapshot does not, and the other way round."""

    added: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.changed or self.removed)

    def counts(self) -> dict[str, int]:
        return {"added": len(self.added), "changed": len(self.changed), "removed": len(self.removed)}

    def describe(self, limit: int = 5) -> str:
        """One line for a person: '2 added (logs/b.jsonl, …), 1 changed (…)'."""
        parts = []
        for label, keys in (("added", self.added), ("changed", self.changed), ("removed", self.removed)):
            if keys:
                shown = ", ".join(keys[:limit]) + (", …" if len(keys) > limit else "")
                parts.append(f"{len(keys)} {label} ({shown})")
        return "; ".join(parts) or "no changes"


def diff(fetched: Iterable[InputFile], listed: Iterable[InputFile]) -> Changes:
    """Changes from the fetched snapshot to a fresh listing."""
    old = {f.key: f for f in fetched}
    new = {f.key: f for f in listed}
    return Changes(
        added=tuple(sorted(set(new) - set(old))),
        changed=tuple(
            sorted(
                k
                for k in set(old) & set(new)
                if (old[k].size, old[k].version) != (new[k].size, new[k].version)
            )
        ),
        removed=tuple(sorted(set(old) - set(new))),
    )


@dataclass(frozen=True)
class Closure:
    """Whether a client-day is final, and why."""

    final: bool
    closes_at: dt.datetime  # end of the local day plus close_after, in the client's zone
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"final": self.final, "closes_at": self.closes_at.isoformat(), "final_reason": self.reason}


def closes_at(client: ClientConfig, day: dt.date) -> dt.datetime:
    """End of the client's local day plus its close_after."""
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=client.tz)
    return end + dt.timedelta(seconds=client.close_after_s)


def closed_entry(client: ClientConfig, day: dt.date, now: dt.datetime) -> list[InputFile]:
    """[the @closed entry] once the day's close time has passed, else []."""
    at = closes_at(client, day)
    return [InputFile(CLOSED, 0, at.isoformat())] if now >= at else []


def closure(
    client: ClientConfig, day: dt.date, keys: Iterable[str], now: dt.datetime | None = None
) -> Closure:
    """Final when the client wrote its ready marker or the close time has passed; else provisional.

    With `now` omitted the snapshot's keys decide: the day is closed when they hold @closed.
    """
    at = closes_at(client, day)
    keys = set(keys)
    if client.ready_marker in keys:
        return Closure(True, at, f"the client wrote {client.ready_marker}")
    if CLOSED in keys if now is None else now >= at:
        return Closure(True, at, f"closed at {at.isoformat()} (end of the local day + {client.close_after})")
    return Closure(
        False, at, f"provisional until {at.isoformat()} or until the client writes {client.ready_marker}"
    )
