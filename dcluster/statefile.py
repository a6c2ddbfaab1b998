"""The service's state files as JSON, written through the project's one atomic writer.

fraudcore.atomic writes a temporary sibling, fsyncs it, renames it over the target and fsyncs
the folder, so a crash or a power cut leaves the old file or the new one, never half. Every
file under {state_dir} that the service reads back goes through here (jobs/{id}.json,
resources.json, run/{id}.notice.json), each in the JSON form it has always had.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fraudcore import atomic


def write_json(path: Path, doc: Any, *, indent: int | None = None) -> None:
    """Replace `path` with `doc` as JSON (sorted keys, no trailing newline), atomically and durably."""
    atomic.write_bytes(path, json.dumps(doc, indent=indent, sort_keys=True).encode("utf-8"))
