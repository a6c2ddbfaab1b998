"""Luigi targets of a client-day: stages that are current with the client's bucket, and objects in it.

A stage is complete when its _DONE exists *and* it was made from the input snapshot the day
has now (fraudcore/snapshot.py). The current snapshot comes from one listing of the day's
prefix per process: luigi checks every task of the graph, and they all share that listing.

A run trusts a raw/ snapshot it fetched itself: once the Fetcher of this run has copied the
bucket, the rest of the run works on that copy even if more files land meanwhile (they make
the day stale for the next run). RUN_STARTED is taken when the module is imported, before
luigi forks its workers, so every process of one run agrees on it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import luigi

from fraudcore.paths import WorkPaths, done_meta, is_done
from pipeline.day import ClientDay
from pipeline.layout import MANIFEST, SUCCESS

logger = logging.getLogger("luigi-interface")

RUN_STARTED = time.time()
_listings: dict[tuple[str, str], list] = {}
_lock = threading.Lock()


def new_run() -> None:
    """Start a new run in this process: forget the listings and trust no earlier fetch."""
    global RUN_STARTED
    with _lock:
        _listings.clear()
        RUN_STARTED = time.time()


def listing(day: ClientDay) -> list:
    """The day's input listing (bucket and inbox), listed once per run and process."""
    from pipeline.ingest import list_input

    key = (day.name, day.date.isoformat())
    with _lock:
        if key not in _listings:
            _listings[key] = list_input(day)
        return _listings[key]


def raw_is_current(paths: WorkPaths, listed: Callable[[], list]) -> str | None:
    """The input id of raw/ when it matches the day's input (or was fetched in this run), else None."""
    from fraudcore.snapshot import snapshot_id

    meta = done_meta(paths.stage("raw"))
    fetched = meta.get("input")
    if not fetched:
        return None
    if float(meta.get("fetched_at", 0)) >= RUN_STARTED:
        return fetched
    return fetched if snapshot_id(listed()) == fetched else None


class StageTarget(luigi.LocalTarget):
    """A stage's _DONE marker, complete only when the stage was made from the current input."""

    def __init__(self, paths: WorkPaths, stage: str, current_input: Callable[[], str | None]) -> None:
        super().__init__(str(paths.done(stage)))
        self.stage_dir = paths.stage(stage)
        self._current_input = current_input

    def exists(self) -> bool:
        if not is_done(self.stage_dir):
            return False
        made_from = done_meta(self.stage_dir).get("input")
        return made_from is not None and made_from == self._current_input()


class RawDataTarget(luigi.Target):
    """The day's raw data files in the client's bucket: exists once any logs/, events/ or transactions/ file landed.

    Asks the day's input listing of this run, so the Fetcher copies what this check saw. An
    unreachable store fails the check rather than reading as "no data".
    """

    def __init__(self, day: ClientDay, listed: Callable[[], list]) -> None:
        self.day = day
        self._listed = listed

    def exists(self) -> bool:
        from pipeline.ingest import raw_data_keys

        if raw_data_keys(self._listed()):
            return True
        logger.warning(
            "no raw data for %s %s at %s (expected logs/, events/ or transactions/ files)",
            self.day.name,
            self.day.date,
            self.path,
        )
        return False

    @property
    def path(self) -> str:
        return self.day.url(self.day.raw_prefix)


class ObjectTarget(luigi.Target):
    """One object in a bucket; exists() asks the store and lets its errors through."""

    def __init__(self, bucket: str, key: str, store=None) -> None:
        self.bucket = bucket
        self.key = key
        self._store = store

    @property
    def store(self):
        if self._store is None:
            from batch_tasks.config import settings

            self._store = settings().object_store()
        return self._store

    def exists(self) -> bool:
        # No try/except: an unreachable store must fail the check, not read as "not done"
        # (that would re-run and re-send a finished day).
        return self.store.exists(self.bucket, self.key)

    @property
    def path(self) -> str:
        return self.store.url(self.bucket, self.key)


class ResultsTarget(ObjectTarget):
    """The sent results folder: _SUCCESS is there and the manifest names the current input and staging.

    `staged_id` gives the id of the results staged in the warehouse now: results staged again
    (a rerun) are sent again even when the input is the same.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str,
        current_input: Callable[[], str | None],
        staged_id: Callable[[], str | None],
        store=None,
    ) -> None:
        super().__init__(bucket, prefix + SUCCESS, store)
        self.prefix = prefix
        self._current_input = current_input
        self._staged_id = staged_id

    def exists(self) -> bool:
        import json

        if not super().exists():
            return False
        manifest = json.loads(self.store.get_bytes(self.bucket, self.prefix + MANIFEST))
        if manifest.get("input_snapshot") is None or manifest.get("input_snapshot") != self._current_input():
            return False
        staged = self._staged_id()
        return staged is not None and manifest.get("staged_id") == staged
