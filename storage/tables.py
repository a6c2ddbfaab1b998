"""make_table_store: the one place a backend name becomes a table store."""

from __future__ import annotations

from collections.abc import Callable

from storage.model import TableStore, TableStoreSettings
from storage.sqlite_store import SQLiteTableStore

__all__ = ["make_table_store"]


def _sqlite_store(settings: TableStoreSettings) -> TableStore:
    return SQLiteTableStore(settings.sqlite_path)


def _cassandra_store(settings: TableStoreSettings) -> TableStore:
    # Imported here so the SQLite default never loads the Cassandra driver.
    from storage.cassandra_store import CassandraTableStore

    return CassandraTableStore(settings)


# One opener per name of storage.model.BACKENDS.
_OPENERS: dict[str, Callable[[TableStoreSettings], TableStore]] = {
    "sqlite": _sqlite_store,
    "cassandra": _cassandra_store,
}


def make_table_store(settings: TableStoreSettings) -> TableStore:
    """The table store the settings name."""
    settings.validate()
    return _OPENERS[settings.backend](settings)
