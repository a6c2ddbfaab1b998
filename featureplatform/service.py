"""State and rules of the FP service: ingest, recompute, idempotent batches, cached reads, metrics."""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

from featureplatform import compute
from featureplatform.settings import FPSettings
from featureplatform.store import FeatureStore, StoreTx

log = logging.getLogger(__name__)

CLIENT_RE = re.compile(r"^[a-z][a-z0-9_-]{1,31}$")
BATCH_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$")


class FPRequestError(Exception):
    """A request the service refuses; carries the HTTP status the API answers with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class TTLCache:
    """A small thread-safe key → value cache whose entries expire after `ttl` seconds."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._data: dict[tuple, tuple[float, object]] = {}
        self._lock = threading.Lock()
        self._epoch = 0

    @property
    def epoch(self) -> int:
        """Invalidation counter; take it before loading a value to `put` later."""
        return self._epoch

    def get(self, key: tuple) -> object | None:
        """The cached value, or None when absent or expired."""
        with self._lock:
            hit = self._data.get(key)
            if hit is None:
                return None
            expires, value = hit
            if self._clock() >= expires:
                del self._data[key]
                return None
            return value

    def put(self, key: tuple, value: object, epoch: int | None = None) -> None:
        """Cache a value for `ttl` seconds, unless an invalidation happened since `epoch`."""
        if self.ttl <= 0:
            return
        with self._lock:
            # A value loaded before a concurrent ingest committed may already be stale; caching
            # it would hide the ingest for a whole TTL.
            if epoch is not None and epoch != self._epoch:
                return
            self._data[key] = (self._clock() + self.ttl, value)

    def invalidate(self, keys: Iterable[tuple]) -> None:
        """Drop the given keys."""
        with self._lock:
            self._epoch += 1
            for key in keys:
                self._data.pop(key, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)


class FeatureService:
    """The FP rules over one store: what ingest does, what a read returns, what is counted."""

    def __init__(
        self, settings: FPSettings, store: FeatureStore, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = settings
        self.store = store
        # One cache per service instance: two apps in one process never see each other's data.
        self.cache = TTLCache(settings.cache_ttl_seconds, clock)
        self._counters = {
            "records_ingested": 0,
            "realtime_requests": 0,
            "realtime_records": 0,
            "realtime_slow": 0,
            "batches_applied": 0,
            "batch_records": 0,
            "batches_duplicate": 0,
            "feature_reads": 0,
            "cache_hits": 0,
            "cache_misses": 0,
            "features_not_found": 0,
        }
        self._counter_lock = threading.Lock()
        self._started = time.time()

    def _count(self, **deltas: int) -> None:
        with self._counter_lock:
            for name, delta in deltas.items():
                self._counters[name] += delta

    def ingest_realtime(self, client: str, records: Sequence[Mapping]) -> dict:
        """Apply a small set of records synchronously; answer counts and elapsed time."""
        check_client(client)
        limit = self.settings.realtime_max_records
        if len(records) > limit:
            raise FPRequestError(
                413,
                f"real-time ingest takes at most {limit} records, got {len(records)}; "
                "use /fp/v1/ingest/batch for bulk loads",
            )
        start = time.perf_counter()
        with self.store.write() as tx:
            counts, keys = self._apply(tx, client, records, source="realtime")
        self.cache.invalidate(keys)
        elapsed_ms = round((time.perf_counter() - start) * 1000, 3)
        slow = elapsed_ms > self.settings.realtime_timeout_ms
        if slow:
            log.warning(
                "real-time ingest for %s took %.1f ms (budget %.0f ms, %d records)",
                client,
                elapsed_ms,
                self.settings.realtime_timeout_ms,
                len(records),
            )
        self._count(
            records_ingested=len(records),
            realtime_requests=1,
            realtime_records=len(records),
            realtime_slow=int(slow),
        )
        return {"client": client, "records": len(records), **counts, "elapsed_ms": elapsed_ms}

    def ingest_batch(self, client: str, batch_id: str, records: Sequence[Mapping]) -> dict:
        """Apply a batch once: a batch id seen before returns its first answer with duplicate=true."""
        check_client(client)
        if not BATCH_ID_RE.match(batch_id):
            raise FPRequestError(
                422, f"invalid batch_id {batch_id!r}: use letters, digits and ._:- (max 200)"
            )
        limit = self.settings.batch_size_max
        if len(records) > limit:
            raise FPRequestError(
                413,
                f"batch {batch_id} has {len(records)} records; the limit is {limit} "
                "per batch, split it into smaller batches",
            )
        start = time.perf_counter()
        with self.store.write() as tx:
            seen = tx.get_batch(client, batch_id)
            if seen is None:
                counts, keys = self._apply(tx, client, records, source="batch")
                result = {
                    "client": client,
                    "batch_id": batch_id,
                    "status": "applied",
                    "records": len(records),
                    **counts,
                }
                tx.put_batch(client, batch_id, len(records), "applied", _now_iso(), result)
        if seen is not None:
            self._count(batches_duplicate=1)
            return {
                **seen["result"],
                "duplicate": True,
                "received_at": seen["received_at"],
                "elapsed_ms": round((time.perf_counter() - start) * 1000, 3),
            }
        self.cache.invalidate(keys)
        self._count(batches_applied=1, batch_records=len(records), records_ingested=len(records))
        return {**result, "duplicate": False, "elapsed_ms": round((time.perf_counter() - start) * 1000, 3)}

    def _apply(
        self, tx: StoreTx, client: str, records: Sequence[Mapping], source: str
    ) -> tuple[dict, list[tuple[str, str]]]:
        """Merge records into stored contributions, recompute touched entities; counts and cache keys."""
        users, nodes = compute.touched(records)
        existing = {(c["user_id"], c["node_id"]): c for c in tx.contributions_for_users(client, users)}
        merged = compute.merge_records(existing, records)
        tx.put_contributions(client, merged.values())
        # Recompute from the full stored state, not from the batch: a user seen in several
        # batches gets features over all of its edges.
        by_user: dict[str, list[dict]] = {u: [] for u in users}
        for key, c in existing.items():
            if key not in merged:
                by_user[c["user_id"]].append(c)
        for c in merged.values():
            by_user[c["user_id"]].append(c)
        rows: list[tuple[str, str, dict]] = [
            (user_id, compute.USER, compute.user_features(contribs)) for user_id, contribs in by_user.items()
        ]
        rows.extend(
            (
                agg["node_id"],
                compute.NODE,
                compute.node_features(agg["node_type"], agg["users"], agg["events"], agg["is_super"]),
            )
            for agg in tx.node_aggregates(client, nodes)
        )
        tx.put_features(client, rows, _now_iso(), source)
        # The caller invalidates these after commit, so no reader caches the pre-commit row.
        keys = [(client, u) for u in users] + [(client, n) for n in nodes]
        return {"users": len(users), "nodes": len(nodes), "edges": len(merged)}, keys

    def batch_status(self, client: str, batch_id: str) -> dict:
        """Status of a batch; 404 when it was never received."""
        check_client(client)
        row = self.store.get_batch(client, batch_id)
        if row is None:
            raise FPRequestError(404, f"batch {batch_id} of client {client} is unknown")
        return {
            "client": client,
            "batch_id": batch_id,
            "status": row["status"],
            "records": row["records"],
            "received_at": row["received_at"],
        }

    def features(self, client: str, entity_id: str) -> dict:
        """Features of one user or node, served from the TTL cache when fresh; 404 when unknown."""
        check_client(client)
        key = (client, entity_id)
        cached = self.cache.get(key)
        if cached is not None:
            self._count(feature_reads=1, cache_hits=1)
            return dict(cached)  # type: ignore[call-overload]
        epoch = self.cache.epoch
        row = self.store.get_features(client, entity_id)
        if row is None:
            self._count(feature_reads=1, cache_misses=1, features_not_found=1)
            raise FPRequestError(404, f"no features for entity {entity_id!r} of client {client}")
        self.cache.put(key, row, epoch)
        self._count(feature_reads=1, cache_misses=1)
        return dict(row)

    def health(self) -> dict:
        """Liveness plus a store round trip."""
        self.store.counts()
        return {"status": "ok", "uptime_seconds": round(time.time() - self._started, 3)}

    def metrics(self) -> dict:
        """Counters since start plus stored row counts."""
        with self._counter_lock:
            counters = dict(self._counters)
        return {**counters, "cache_entries": len(self.cache), "stored": self.store.counts()}


def check_client(client: str) -> None:
    """Refuse client names outside the product-wide pattern."""
    if not CLIENT_RE.match(client or ""):
        raise FPRequestError(422, f"invalid client {client!r}: must match {CLIENT_RE.pattern}")


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
