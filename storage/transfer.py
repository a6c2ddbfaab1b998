"""Folder-level copies between an object store prefix and a local directory."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from storage.errors import StorageError
from storage.objectstore import ObjectStore

Progress = Callable[[int, int], None]


def _dir_prefix(prefix: str) -> str:
    """`prefix` as a folder: "" or ending in "/", so "a/b" never matches "a/bc/…"."""
    return prefix if not prefix or prefix.endswith("/") else prefix + "/"


def download_prefix(
    store: ObjectStore,
    bucket: str,
    prefix: str,
    dest_dir: str | os.PathLike[str],
    progress: Progress | None = None,
) -> list[Path]:
    """Local copies, sorted, of every object under the folder `prefix`, at the same relative paths in `dest_dir`.

    Files already in `dest_dir` that are not in the store are left alone; callers download
    into a fresh (temporary) folder when they need an exact mirror.
    """
    base = _dir_prefix(prefix)
    # Zero-byte "folder" placeholders (keys ending in "/") that S3 consoles create hold no data.
    keys = [i.key for i in store.list(bucket, base) if not i.key.endswith("/")]
    return download_keys(store, bucket, keys, base, dest_dir, progress=progress)


def download_keys(
    store: ObjectStore,
    bucket: str,
    keys: Sequence[str],
    prefix: str,
    dest_dir: str | os.PathLike[str],
    progress: Progress | None = None,
) -> list[Path]:
    """Local copies, sorted, of the named objects under the folder `prefix`, at their paths relative to it."""
    base = _dir_prefix(prefix)
    dest = Path(dest_dir)
    targets = []
    for key in keys:
        if not key.startswith(base):
            raise StorageError(f"cannot mirror {store.url(bucket, key)}: it is not under {base}")
        parts = key[len(base) :].split("/")
        if any(p in ("", ".", "..") for p in parts):
            raise StorageError(
                f"cannot mirror {store.url(bucket, key)} into {dest}: the key is not a plain relative path"
            )
        targets.append((key, dest.joinpath(*parts)))
    if progress:
        progress(0, len(targets))
    for done, (key, target) in enumerate(targets, start=1):
        store.download_file(bucket, key, target)
        if progress:
            progress(done, len(targets))
    return sorted(t for _, t in targets)


def upload_dir(
    store: ObjectStore,
    bucket: str,
    prefix: str,
    src_dir: str | os.PathLike[str],
    last: Sequence[str] = (),
    progress: Progress | None = None,
) -> list[str]:
    """Keys written, in upload order: every file under `src_dir` at `prefix` + its relative path.

    Files are uploaded in sorted order, except the relative paths named in `last`, which go
    after all others in the given order — so a `_manifest.json` then `_SUCCESS` marker only
    appears once everything it vouches for is in place.
    """
    src = Path(src_dir)
    if not src.is_dir():
        raise StorageError(f"cannot upload {src}: not a folder")
    rels = sorted(
        Path(dirpath, name).relative_to(src).as_posix()
        for dirpath, _dirs, names in os.walk(src)
        for name in names
    )
    missing = [name for name in last if name not in rels]
    if missing:
        # Checked before the first upload: a run that lacks its marker must not publish anything.
        raise StorageError(f"cannot upload {src}: files named to go last are missing: {missing}")
    if len(set(last)) != len(last):
        raise StorageError(f"cannot upload {src}: `last` names a file twice: {list(last)}")
    late = set(last)
    order = [r for r in rels if r not in late] + list(last)
    base = _dir_prefix(prefix)
    keys = []
    if progress:
        progress(0, len(order))
    for done, rel in enumerate(order, start=1):
        key = base + rel
        store.put_file(bucket, key, src / rel)
        keys.append(key)
        if progress:
            progress(done, len(order))
    return keys
