"""Job logs: where a run's output ends up, its tail, and the line that says why a job failed."""

from __future__ import annotations

import re
from pathlib import Path

# The last line of a Python traceback: "ValueError: bad", "pyspark.errors....AnalysisException: x".
EXCEPTION_LINE = re.compile(
    r"^(?:[A-Za-z_][\w]*\.)*[A-Za-z_]\w*(?:Error|Exception|Exit|Interrupt)\b(?::.*)?$"
)
ERROR_WORD = re.compile(r"\b(?:ERROR|FATAL|error:|Error:|Exception:)")
TAIL_READ_BYTES = 64 * 1024
MAX_MESSAGE_CHARS = 500
# Lines read to find a failure's cause: Spark prints shutdown noise after the Python traceback.
ERROR_CONTEXT_LINES = 200


def read_tail(path: Path, lines: int) -> list[str]:
    """The last `lines` lines of a text file (reads only its end); [] when missing."""
    if lines <= 0:
        return []
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - TAIL_READ_BYTES))
            data = fh.read()
    except FileNotFoundError:
        return []
    out = data.decode("utf-8", errors="replace").splitlines()
    if size > TAIL_READ_BYTES and out:
        out = out[1:]  # the first line was cut by the seek
    return out[-lines:]


def read_all(path: Path) -> str:
    """The whole log as text ("" before the job started)."""
    return path.read_text(errors="replace") if path.exists() else ""


def error_line(lines: list[str], exit_code: int | None) -> str:
    """The line of a failed job's log that best says why: exception, then error, then the last."""
    stripped = [ln.strip() for ln in lines if ln.strip()]
    for pattern in (EXCEPTION_LINE.match, ERROR_WORD.search):
        for ln in reversed(stripped):
            if pattern(ln):
                return ln[:MAX_MESSAGE_CHARS]
    if stripped:
        return stripped[-1][:MAX_MESSAGE_CHARS]
    return f"exited with code {exit_code} and wrote no log"
