"""Client fraud labels (user_id,label CSV) and how well the day's flags match them."""

from __future__ import annotations

import csv
import gzip
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

LABELS = ("fraud", "legit")
_MAX_PROBLEMS = 20  # enough to diagnose a bad file without copying all of it into logs


class LabelSet(dict[str, str]):
    """user_id → "fraud"|"legit", plus the rows that could not be read."""

    def __init__(self) -> None:
        """An empty label set with zero counts."""
        super().__init__()
        self.rows = 0
        self.bad_rows = 0
        self.conflicts = 0
        self.problems: list[str] = []

    def _problem(self, text: str) -> None:
        """Keep a problem description, up to a limit."""
        if len(self.problems) < _MAX_PROBLEMS:
            self.problems.append(text)


def _lines(path_or_lines: Path | str | Iterable[str]) -> Iterable[str]:
    """Text lines of a labels file (optionally .gz) or the given lines themselves."""
    if isinstance(path_or_lines, str | Path):
        path = Path(path_or_lines)
        data = path.read_bytes()
        if path.name.endswith(".gz"):
            data = gzip.decompress(data)
        return data.decode("utf-8-sig").splitlines()
    return path_or_lines


def read_labels(path_or_lines: Path | str | Iterable[str]) -> LabelSet:
    """Labels of a user_id,label CSV; bad rows are counted in .bad_rows and logged, never fatal.

    A str is a path. A user labelled both ways counts as fraud (a missed fraudster costs more
    than a reviewed legit user) and is counted in .conflicts.
    """
    labels = LabelSet()
    reader = csv.reader(line.rstrip("\r\n") for line in _lines(path_or_lines))
    uid_col, label_col = 0, 1
    header_seen = False
    for row in reader:
        lineno = reader.line_num  # physical line, right even when a quoted field spans lines
        cells = [c.strip() for c in row]
        if not any(cells):
            continue  # blank lines are layout, not data
        if not header_seen:
            header_seen = True
            lowered = [c.lower() for c in cells]
            if "user_id" in lowered and "label" in lowered:
                uid_col, label_col = lowered.index("user_id"), lowered.index("label")
                continue
            # No header: read the first row as data in the default column order.
        labels.rows += 1
        if len(cells) <= max(uid_col, label_col):
            labels.bad_rows += 1
            labels._problem(f"line {lineno}: expected user_id,label")
            continue
        uid, label = cells[uid_col], cells[label_col].lower()
        if not uid:
            labels.bad_rows += 1
            labels._problem(f"line {lineno}: empty user_id")
            continue
        if label not in LABELS:
            labels.bad_rows += 1
            labels._problem(f"line {lineno}: label {cells[label_col]!r} is not fraud|legit")
            continue
        previous = labels.get(uid)
        if previous is not None and previous != label:
            labels.conflicts += 1
            labels._problem(f"line {lineno}: user {uid!r} labelled both fraud and legit")
            label = "fraud"
        labels[uid] = label
    if labels.bad_rows or labels.conflicts:
        log.warning(
            "labels: %d of %d rows unreadable, %d conflicting; first problems: %s",
            labels.bad_rows,
            labels.rows,
            labels.conflicts,
            "; ".join(labels.problems[:3]),
        )
    return labels


def _ratio(num: int, den: int) -> float | None:
    """num/den rounded to 4 places, None when the denominator is 0 (undefined, not zero)."""
    return round(num / den, 4) if den else None


def evaluate(predictions: dict[str, bool], labels: dict[str, str]) -> dict[str, Any]:
    """Confusion counts and precision/recall/f1 of the flags against the labels.

    Only labelled users that were scored today (present in predictions) enter the confusion
    matrix. A labelled user absent from predictions is counted as unscored, not as a negative:
    the day had no activity of that user, so the model made no call about them.
    Flagged users without a label are not counted either (unknown, not false positives).
    """
    tp = fp = fn = tn = 0
    unscored = unscored_fraud = 0
    for uid, label in labels.items():
        if uid not in predictions:
            unscored += 1
            unscored_fraud += label == "fraud"
            continue
        flagged = bool(predictions[uid])
        if label == "fraud":
            tp += flagged
            fn += not flagged
        else:
            fp += flagged
            tn += not flagged
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, tp + fn)
    if precision is None or recall is None:
        f1 = None
    elif precision + recall == 0:
        f1 = 0.0
    else:
        f1 = round(2 * tp / (2 * tp + fp + fn), 4)  # exact counts, not the rounded ratios
    labelled_active = tp + fp + fn + tn
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "labelled_users": len(labels),
        "labelled_active_users": labelled_active,
        "unscored_labelled_users": unscored,
        "unscored_fraud_users": unscored_fraud,
        "unlabelled_flagged_users": sum(1 for u, f in predictions.items() if f and u not in labels),
    }
