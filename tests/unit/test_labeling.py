"""Client labels and the precision/recall of the day's flags against them."""

from __future__ import annotations

import gzip
import logging

import pytest

from fraudcore.labeling import evaluate, read_labels


def test_read_labels_from_lines_counts_bad_rows_without_crashing(caplog):
    lines = [
        "user_id,label\n",
        "u1,fraud\n",
        "u2, Legit \n",
        "\n",
        "u3,maybe\n",
        ",fraud\n",
        "u4\n",
        "u5,legit,extra\n",
        "u6,legit\n",
        "u6,fraud\n",
    ]
    with caplog.at_level(logging.WARNING, logger="fraudcore.labeling"):
        labels = read_labels(lines)
    assert labels == {"u1": "fraud", "u2": "legit", "u5": "legit", "u6": "fraud"}
    assert (labels.rows, labels.bad_rows, labels.conflicts) == (8, 3, 1)
    assert labels.problems == [
        "line 5: label 'maybe' is not fraud|legit",
        "line 6: empty user_id",
        "line 7: expected user_id,label",
        "line 10: user 'u6' labelled both fraud and legit",
    ]
    assert "3 of 8 rows unreadable" in caplog.text


def test_read_labels_conflict_resolves_to_fraud_in_any_order():
    assert read_labels(["user_id,label", "u1,fraud", "u1,legit"]) == {"u1": "fraud"}


def test_read_labels_from_files_with_reordered_header_bom_and_gzip(tmp_path):
    plain = tmp_path / "labels.csv"
    plain.write_bytes("\ufefflabel,user_id\r\nfraud,u1\r\nlegit,u2\r\n".encode())
    assert read_labels(plain) == {"u1": "fraud", "u2": "legit"}
    assert read_labels(str(plain)) == {"u1": "fraud", "u2": "legit"}
    packed = tmp_path / "labels.csv.gz"
    packed.write_bytes(gzip.compress(b"user_id,label\nu9,fraud\n"))
    assert read_labels(packed) == {"u9": "fraud"}


def test_read_labels_without_header_reads_the_first_row_as_data():
    labels = read_labels(["u1,fraud", "u2,legit"])
    assert labels == {"u1": "fraud", "u2": "legit"}
    assert labels.bad_rows == 0


def test_evaluate_counts_and_ratios():
    predictions = {"u1": True, "u2": True, "u3": False, "u4": False, "u5": True, "u6": False, "u7": True}
    labels = {
        "u1": "fraud",
        "u2": "legit",
        "u3": "fraud",
        "u4": "legit",
        "u5": "fraud",
        "u6": "legit",
        "gone1": "fraud",
        "gone2": "legit",
    }
    assert evaluate(predictions, labels) == {
        "tp": 2,
        "fp": 1,
        "fn": 1,
        "tn": 2,
        "precision": 0.6667,
        "recall": 0.6667,
        "f1": 0.6667,
        "labelled_users": 8,
        "labelled_active_users": 6,
        # labelled users with no activity are unscored, not negatives
        "unscored_labelled_users": 2,
        "unscored_fraud_users": 1,
        "unlabelled_flagged_users": 1,
    }


@pytest.mark.parametrize(
    "predictions, labels, expected",
    [
        ({}, {}, (None, None, None)),
        ({"u1": False}, {"u1": "legit"}, (None, None, None)),  # nothing flagged, no fraud labelled
        ({"u1": True}, {"u1": "legit"}, (0.0, None, None)),  # no fraud labelled: recall undefined
        ({"u1": False}, {"u1": "fraud"}, (None, 0.0, None)),  # nothing flagged: precision undefined
        ({"u1": True, "u2": False}, {"u1": "legit", "u2": "fraud"}, (0.0, 0.0, 0.0)),
        ({"u1": True}, {"u1": "fraud"}, (1.0, 1.0, 1.0)),
        ({"u1": True}, {"u9": "fraud"}, (None, None, None)),  # the only fraud label is unscored
    ],
)
def test_evaluate_undefined_ratios_are_none(predictions, labels, expected):
    out = evaluate(predictions, labels)
    assert (out["precision"], out["recall"], out["f1"]) == expected
