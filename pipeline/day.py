"""The context every step takes: a `ClientDay`, built from one `Settings`."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fraudcore.clients import ClientConfig, get_client, parse_date
from fraudcore.paths import WorkPaths
from pipeline import layout
from storage.objectstore import ObjectStore, ObjectStoreSettings, make_object_store

if TYPE_CHECKING:
    from storage.model import TableStore

# How a long step reports progress: (done, total).
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Settings:
    """Where a run finds a client-day's data: the warehouse, the registry, the object store, the table store."""

    warehouse: Path
    """Root of the warehouse: {warehouse}/{client}/{date}/{stage}/."""

    objectstore: ObjectStoreSettings
    """The clients' buckets, environment overrides already applied."""

    open_tables: Callable[[], TableStore] | None = None
    """Opens the table store (run records, DFE rows, results rows); whoever opens it closes it."""

    registry: str | None = None
    """Client registry YAML; None means FRAUDBATCH_CLIENTS, else config/clients.yaml."""

    def object_store(self) -> ObjectStore:
        """The object store these settings name."""
        return make_object_store(self.objectstore)

    def client_day(self, client: ClientConfig, date: dt.date) -> ClientDay:
        """The ClientDay of a client already looked up in the registry."""
        return ClientDay(
            client, WorkPaths(self.warehouse, client.name, date), self.object_store, self.open_tables
        )

    def resolve(self, client: str, date: str | dt.date) -> ClientDay:
        """The ClientDay of a client name looked up in the registry; ConfigError for a bad name or date."""
        config = get_client(client, self.registry)
        return self.client_day(config, parse_date(date))


class ClientDay:
    """One client's day: its registry entry, date, warehouse paths, object store and table store."""

    def __init__(
        self,
        client: ClientConfig,
        paths: WorkPaths,
        object_store: Callable[[], ObjectStore],
        open_tables: Callable[[], TableStore] | None = None,
    ) -> None:
        if paths.client != client.name:
            raise ValueError(f"warehouse paths of client {paths.client!r} given for client {client.name!r}")
        self.client = client
        self.paths = paths
        self._object_store = object_store
        self._open_tables = open_tables
        self._store: tuple[int, ObjectStore] | None = None

    def __repr__(self) -> str:
        return f"ClientDay({self.name!r}, {self.date.isoformat()})"

    def __getstate__(self) -> dict[str, Any]:
        # luigi sends tasks between processes pickled; a store (and its connections) stays behind.
        return {**self.__dict__, "_store": None}

    @property
    def name(self) -> str:
        return self.client.name

    @property
    def date(self) -> dt.date:
        return self.paths.date

    @property
    def bucket(self) -> str:
        return self.client.bucket

    @property
    def raw_prefix(self) -> str:
        return layout.raw_prefix(self.name, self.date)

    @property
    def results_prefix(self) -> str:
        return layout.results_prefix(self.name, self.date)

    @property
    def store(self) -> ObjectStore:
        """The object store holding the client's bucket, built on first use in each process."""
        # luigi runs tasks in forked worker processes: a store of their own never shares the
        # parent's open connections.
        pid = os.getpid()
        if self._store is None or self._store[0] != pid:
            self._store = (pid, self._object_store())
        return self._store[1]

    def url(self, key: str) -> str:
        """URL of a key in the client's bucket."""
        return self.store.url(self.bucket, key)

    @contextlib.contextmanager
    def tables(self) -> Iterator[TableStore]:
        """The table store, open for the block and closed after it."""
        if self._open_tables is None:
            raise RuntimeError(f"{self!r} has no table store")
        store = self._open_tables()
        try:
            yield store
        finally:
            store.close()
