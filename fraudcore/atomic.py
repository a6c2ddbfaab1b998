"""Atomic writes: a reader sees the old file or the new one, never half of one, even after a crash.

The one way the project replaces a file or a folder: write a temporary sibling, fsync it, rename
it over the target, then fsync the folder so the rename itself survives a power cut.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def _sibling(path: Path, kind: str) -> Path:
    return path.parent / f".{path.name}.{kind}-{uuid.uuid4().hex[:8]}"


def fsync_dir(folder: Path) -> None:
    """Make the entries of `folder` (a rename into it) durable."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_file(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary sibling of `path` for writing; on a clean exit it replaces `path`.

    On an exception the temporary file is removed and `path` is left as it was.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_file writes whole files: mode must be 'wb' or 'w', not {mode!r}")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(target, "tmp")
    try:
        with open(tmp, mode, encoding="utf-8" if mode == "w" else None) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        fsync_dir(target.parent)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace `path` with `data` atomically."""
    with atomic_file(path) as fh:
        fh.write(data)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Replace `path` with UTF-8 `text` atomically."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike[str], doc: object) -> None:
    """Deterministic JSON (sorted keys, 2-space indent, trailing newline), replaced atomically."""
    write_text(path, json.dumps(doc, sort_keys=True, indent=2) + "\n")


def replace_dir(tmp: str | os.PathLike[str], final: str | os.PathLike[str]) -> None:
    """Put the folder `tmp` in place of `final` (which may not exist), then drop the old one.

    The old folder is first renamed aside, so at every moment `final` is either the whole old
    folder or the whole new one.
    """
    tmp, final = Path(tmp), Path(final)
    old = None
    if final.exists():
        old = _sibling(final, "old")
        os.replace(final, old)
    os.replace(tmp, final)
    fsync_dir(final.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def temp_dir_for(final: str | os.PathLike[str]) -> Path:
    """A new empty temporary sibling of `final`, to fill and then hand to replace_dir."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(final, "tmp")
    tmp.mkdir()
    return tmp
