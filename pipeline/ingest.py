"""The day's input: listing the raw prefix and the inbox, and fetching the raw files into the warehouse."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import time
from collections.abc import Iterable
from typing import Any

from fraudcore import snapshot
from fraudcore.paths import DONE, WorkPaths, done_meta, is_done
from fraudcore.snapshot import INBOX, InputFile
from pipeline.day import ClientDay, Progress
from pipeline.layout import DATA_FOLDERS


def bucket_listing(day: ClientDay) -> list[InputFile]:
    """Every object under the day's raw prefix, keys relative to it."""
    prefix = day.raw_prefix
    return [
        InputFile(i.key[len(prefix) :], i.size, i.version)
        for i in day.store.list(day.bucket, prefix)
        if not i.key.endswith("/")
    ]


def list_input(day: ClientDay, now: dt.datetime | None = None) -> list[InputFile]:
    """The day's input as it is now: one listing of the raw prefix, plus the inbox.

    The inbox (records other days' files carried for this day) is read from the warehouse;
    each of its folders is one entry whose version is its content digest. Once the day's close
    time has passed the listing also holds the @closed entry, so the results made before the
    close are made again, final.
    """
    files = bucket_listing(day) + inbox_files(day.paths)
    files += snapshot.closed_entry(day.client, day.date, now or dt.datetime.now(dt.UTC))
    return sorted(files)


def inbox_files(paths: WorkPaths) -> list[InputFile]:
    """One entry per complete inbox/from-{date}/ folder of the client-day."""
    out = []
    if paths.inbox.is_dir():
        for folder in sorted(paths.inbox.iterdir()):
            if folder.name.startswith("from-") and is_done(folder):
                meta = done_meta(folder)
                version = str(meta.get("digest") or (folder / DONE).stat().st_mtime_ns)
                out.append(InputFile(f"{INBOX}{folder.name}", int(meta.get("rows", 0)), version))
    return out


def raw_data_keys(files: Iterable[InputFile]) -> list[str]:
    """Keys of the data files (logs/, events/, transactions/) in a listing; empty when none landed."""
    return sorted(
        f.key
        for f in files
        if f.from_bucket and f.key.split("/", 1)[0] in DATA_FOLDERS and not f.key.endswith("/")
    )


def fetch_raw(
    day: ClientDay, listing: list[InputFile] | None = None, progress: Progress | None = None
) -> dict[str, Any]:
    """raw/: a copy of the day's raw prefix from the client's bucket.

    Files unchanged since the previous snapshot are taken from the previous raw/ copy; only
    new and changed files are downloaded. raw/_DONE holds the snapshot (every input entry
    with its size and version) and its id, which the later stages record as their input.
    """
    from storage.transfer import download_keys

    listing = sorted(listing if listing is not None else list_input(day))
    bucket_files = [f for f in listing if f.from_bucket]
    data_keys = raw_data_keys(listing)
    if not data_keys:
        raise FileNotFoundError(f"no raw data files under {day.url(day.raw_prefix)}")
    old_dir = day.paths.stage("raw")
    previous = {f.key: f for f in snapshot.from_doc(done_meta(old_dir).get("snapshot"))}
    meta: dict[str, Any] = {}
    with day.paths.output("raw", meta) as tmp:
        reused, wanted = [], []
        for f in bucket_files:
            old = previous.get(f.key)
            kept = old_dir / f.key
            if old is not None and (old.size, old.version) == (f.size, f.version) and kept.is_file():
                target = tmp / f.key
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(kept, target)  # the old copy's bytes, neither downloaded nor copied
                except OSError:
                    shutil.copy2(kept, target)
                reused.append(f.key)
            else:
                wanted.append(f.key)
        download_keys(
            day.store,
            day.bucket,
            [day.raw_prefix + k for k in wanted],
            day.raw_prefix,
            tmp,
            progress=progress,
        )
        changes = snapshot.diff(previous.values(), listing) if previous else None
        meta.update(
            files=len(bucket_files),
            data_files=len(data_keys),
            bytes=sum(f.size for f in bucket_files),
            downloaded=len(wanted),
            reused=len(reused),
            input=snapshot.snapshot_id(listing),
            snapshot=snapshot.to_doc(listing),
            fetched_at=time.time(),
            changes=changes.counts() if changes is not None else {},
        )
    return meta
