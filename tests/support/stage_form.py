"""A warehouse stage in a form two runs of the same job can be compared in, byte for byte where it matters."""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def parquet_form(path: Path) -> tuple[bytes, dict, dict]:
    """Data pages byte for byte, and the footer with each column's encodings as a set.

    parquet-mr lists a column's encodings in HashSet order, which differs between two JVMs (two
    spark-submit runs of the same job already differ there); everything else must be equal.
    """
    import pyarrow.parquet as pq

    raw = path.read_bytes()
    footer_len = struct.unpack("<I", raw[-8:-4])[0]
    meta = pq.ParquetFile(path).metadata
    doc = meta.to_dict()
    for group in doc["row_groups"]:
        for col in group["columns"]:
            col["encodings"] = sorted(col["encodings"])
    return raw[: len(raw) - 8 - footer_len], doc, dict(meta.metadata or {})


def stage_form(stage: Path) -> dict[str, object]:
    """Every file of a stage by its name (part UUIDs masked); _DONE without its timing, .crc files left out."""
    out: dict[str, object] = {}
    for p in sorted(stage.rglob("*")):
        if not p.is_file() or p.name.endswith(".crc"):  # checksums of the files compared here
            continue
        name = UUID.sub("UUID", str(p.relative_to(stage)))
        if p.name == "_DONE":
            out[name] = {k: v for k, v in json.loads(p.read_text()).items() if k != "seconds"}
        elif p.suffix == ".parquet":
            out[name] = parquet_form(p)
        else:
            out[name] = p.read_bytes()
    return out
