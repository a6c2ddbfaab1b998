"""Luigi targets over the object store (client S3 or the local bucket folder)."""
from __future__ import annotations

import luigi


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
