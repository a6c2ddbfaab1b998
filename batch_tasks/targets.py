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

import threading
import time
from collections.abc import Callable

import luigi

from fraudcore.paths import WorkPaths, done_meta, is_done

RUN_STARTED = time.time()
_listings: dict[tuple[str, str], list] = {}
_lock = threading.Lock()


def new_run() -> None:
    """Start a new run in this process: forget the listings and trust no earlier fetch."""
    global RUN_STARTED
    with _lock:
        _listings.clear()
        RUN_STARTED = time.time()


def listing(store, client, day, paths: WorkPaths) -> list:
    """The day's input listing (bucket and inbox), listed once per run and process."""
    from fraudbatch import steps

    key = (client.name, day.isoformat())
    with _lock:
        if key not in _listings:
            _listings[key] = steps.list_input(store, client, day, paths)
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


class ObjectTarget(luigi.Target):
    """One object in a bucket; exists() asks the store and lets its errors through."""

    def __init__(self, bucket: str, key: str, store=None) -> None:
        self.bucket = bucket
        self.key = key
        self._store = store

    @property
    def store(self):
        if self._store is None:
            from batch_tasks.config import objectstore

            self._store = objectstore().store()
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

    def __init__(self, bucket: str, prefix: str, current_input: Callable[[], str | None],
                 staged_id: Callable[[], str | None], store=None) -> None:
        super().__init__(bucket, prefix + "_SUCCESS", store)
        self.prefix = prefix
        self._current_input = current_input
        self._staged_id = staged_id

    def exists(self) -> bool:
        import json

        if not super().exists():
            return False
        manifest = json.loads(self.store.get_bytes(self.bucket, self.prefix + "_manifest.json"))
        if manifest.get("input_snapshot") is None or manifest.get("input_snapshot") != self._current_input():
            return False
        staged = self._staged_id()
        return staged is not None and manifest.get("staged_id") == staged
