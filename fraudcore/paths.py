"""Where each stage of a client-day keeps its data in the warehouse, and atomic stage output."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fraudcore import atomic

DONE = "_DONE"

# Stage directory names, in pipeline order. Each is written whole, then marked with _DONE.
STAGES = (
    "raw",
    "connector",
    "organized",
    "virtual_nodes",
    "dfe",
    "dfe_store",
    "campaigns",
    "user_stats",
    "risk",
    "event_join",
    "result_agg",
    "frontend_campaigns",
    "frontend_data",
    "frontend_report",
    "results_staging",
    "result_sender",
    "ferry_batch",
    "ferry_cron",
    "labeling",
    "monitor",
)


@dataclass(frozen=True)
class WorkPaths:
    """The warehouse folder of one client-day: {warehouse}/{client}/{date}/{stage}/."""

    warehouse: Path
    client: str
    date: dt.date

    @property
    def root(self) -> Path:
        return Path(self.warehouse) / self.client / self.date.isoformat()

    def stage(self, name: str) -> Path:
        if name not in STAGES:
            raise ValueError(f"unknown stage {name!r}")
        return self.root / name

    def done(self, name: str) -> Path:
        return self.stage(name) / DONE

    @property
    def inbox(self) -> Path:
        """Records of this client-day found in other days' files: inbox/from-{date}/ per source day."""
        return self.root / "inbox"

    def input_id(self) -> str | None:
        """Id of the input snapshot the raw/ stage holds (None before the first fetch)."""
        return done_meta(self.stage("raw")).get("input")

    @contextlib.contextmanager
    def output(self, name: str, meta: dict[str, Any] | None = None) -> Iterator[Path]:
        """atomic_dir of stage `name`, its _DONE stamped with the input snapshot it derives from.

        Every stage but raw/ records raw/'s input id, so a stage made from an older snapshot of
        the bucket reads as stale once raw/ is fetched again (batch_tasks.targets.StageTarget).
        """
        input_id = self.input_id()
        stamped: dict[str, Any] = {}  # filled after the block, as the caller may fill `meta` in it
        with atomic_dir(self.stage(name), stamped) as tmp:
            yield tmp
            stamped.update(meta or {})
            if name != "raw":
                stamped["input"] = input_id


def is_done(stage_dir: Path) -> bool:
    return (Path(stage_dir) / DONE).is_file()


def done_meta(stage_dir: Path) -> dict[str, Any]:
    """The metadata in a stage's _DONE marker; {} when the stage has none (or an empty one)."""
    try:
        text = (Path(stage_dir) / DONE).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return {}
    return json.loads(text) if text else {}


@contextlib.contextmanager
def atomic_dir(final: Path, meta: dict[str, Any] | None = None) -> Iterator[Path]:
    """Yield a fresh temporary sibling of `final`; on success replace `final` with it, _DONE last.

    `meta` is serialised into _DONE after the block ends, so the caller may fill it in the block.
    The swap is fraudcore.atomic's, the project's one writer: _DONE is written and fsynced
    through a temporary sibling, the folder renamed over `final`, and the parent fsynced. The
    files the block writes are not fsynced one by one (a stage can hold many part files).

    A failure leaves `final` untouched (a previous complete output stays complete) and removes
    the temporary folder, so a retry starts clean and never sees half-written data.
    """
    tmp = atomic.temp_dir_for(final)
    try:
        yield tmp
        atomic.write_text(tmp / DONE, json.dumps(meta or {}, sort_keys=True) + "\n")
        atomic.replace_dir(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def read_json(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8"))
    return doc
