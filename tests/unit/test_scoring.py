"""Per-user risk rules, risk rows, DFE window merging and the day summary."""

from __future__ import annotations

import pytest

from fraudcore.scoring import RING_MEMBER_BONUS, RULE_POINTS, merge_windows, risk_row, score_user
from fraudcore.summary import HISTOGRAM_BUCKETS, build_summary, histogram_bucket, score_histogram

THRESHOLD = 70


def stats(**kw) -> dict:
    """A quiet old account's user_stats row, with overrides."""
    row = {
        "user_id": "u1",
        "events": 12,
        "logins": 3,
        "failed_logins": 0,
        "transactions": 1,
        "amount_total": 25.0,
        "amount_max": 25.0,
        "distinct_devices": 1,
        "distinct_ips": 2,
        "distinct_fingerprints": 1,
        "first_ms": 0,
        "last_ms": 1,
        "active_hours": 3,
        "night_share": 0.0,
        "is_new_account": False,
        "max_tx_per_10min": 1,
    }
    row.update(kw)
    return row


FEATURES = {
    "transaction_velocity": 1.0,
    "login_failed_ratio": 0.0,
    "is_new_account": 0.0,
    "distinct_devices": 1.0,
    "login_pattern_night_share": 0.0,
}
RING = {"campaign_id": "cmp-aaaaaaaaaaaa", "score": 61, "is_fraud_ring": True}
HOUSEHOLD = {"campaign_id": "cmp-bbbbbbbbbbbb", "score": 14, "is_fraud_ring": False}


def test_carrier_nat_user_scores_zero():
    # Behind a carrier NAT: many users on the IP, but the IP is a super-node and in no campaign.
    assert score_user(stats(distinct_ips=2), FEATURES, None, THRESHOLD) == (0, False, [])


def test_household_member_only_shares_a_device():
    score, flagged, reasons = score_user(
        stats(shared_devices=1, distinct_devices=2), FEATURES, HOUSEHOLD, THRESHOLD
    )
    assert (score, flagged, reasons) == (10, False, ["SHARED_DEVICE"])


def test_household_member_with_every_weak_sign_stays_below_threshold():
    row = stats(shared_devices=1, night_share=0.8, failed_logins=1, logins=4)
    assert score_user(row, FEATURES, HOUSEHOLD, THRESHOLD) == (20, False, ["NIGHT_ACTIVITY", "SHARED_DEVICE"])


def test_new_account_cashing_out_fast_with_failed_logins_is_flagged():
    row = stats(is_new_account=True, transactions=9, failed_logins=3, logins=1, max_tx_per_10min=9)
    features = dict(FEATURES, transaction_velocity=9.0, login_failed_ratio=0.75, is_new_account=1.0)
    assert score_user(row, features, None, THRESHOLD) == (
        75,
        True,
        ["FAILED_LOGINS", "HIGH_TX_VELOCITY", "NEW_ACCOUNT_SPEND"],
    )


def test_failed_logins_need_both_ratio_and_count():
    few = stats(failed_logins=2, logins=0)
    assert score_user(few, dict(FEATURES, login_failed_ratio=1.0), None, THRESHOLD)[2] == []


def test_features_fill_in_when_stats_lack_a_value():
    row = {"user_id": "u1", "events": 8, "transactions": 0}
    features = {"transaction_velocity": 6.0, "login_pattern_night_share": 0.9, "distinct_devices": 5.0}
    assert score_user(row, features, None, THRESHOLD) == (
        55,
        False,
        ["HIGH_TX_VELOCITY", "MANY_DEVICES", "NIGHT_ACTIVITY"],
    )


def test_sleeper_ring_member_is_flagged_through_its_ring():
    sleeper = stats(events=2, transactions=0, is_new_account=True, shared_devices=1)
    score, flagged, reasons = score_user(sleeper, {}, RING, THRESHOLD)
    assert (score, flagged, reasons) == (61 + RING_MEMBER_BONUS, True, ["RING_MEMBER", "SHARED_DEVICE"])


def test_ring_member_keeps_a_higher_own_score_and_is_capped():
    row = stats(is_new_account=True, transactions=9, failed_logins=3, logins=1, max_tx_per_10min=9)
    features = dict(FEATURES, transaction_velocity=9.0, login_failed_ratio=0.75)
    assert score_user(row, features, RING, THRESHOLD)[0] == 95
    row["distinct_devices"] = 6
    assert score_user(row, features, dict(RING, score=90), THRESHOLD)[0] == 100


def test_weakest_ring_member_reaches_default_threshold():
    assert score_user(stats(), {}, dict(RING, score=50), THRESHOLD) == (70, True, ["RING_MEMBER"])


def test_flag_threshold_is_inclusive():
    assert score_user(stats(), {}, dict(RING, score=50), 71)[1] is False


def test_no_single_rule_flags():
    assert max(RULE_POINTS.values()) < THRESHOLD


def test_risk_row_carries_campaign_only_for_rings():
    assert risk_row(stats(shared_devices=1), {}, HOUSEHOLD, THRESHOLD) == {
        "user_id": "u1",
        "risk_score": 10,
        "is_flagged": False,
        "campaign_id": "",
        "reason_codes": "SHARED_DEVICE",
    }
    assert risk_row(stats(shared_devices=1), {}, RING, THRESHOLD) == {
        "user_id": "u1",
        "risk_score": 81,
        "is_flagged": True,
        "campaign_id": "cmp-aaaaaaaaaaaa",
        "reason_codes": "RING_MEMBER;SHARED_DEVICE",
    }


def test_merge_windows_keeps_each_features_maximum():
    windows = [
        {"transaction_velocity": 2.0, "is_new_account": 1.0},
        None,
        {"transaction_velocity": 7.0, "login_failed_ratio": 0.5},
    ]
    assert merge_windows(windows) == {
        "transaction_velocity": 7.0,
        "is_new_account": 1.0,
        "login_failed_ratio": 0.5,
    }
    assert merge_windows([]) == {}


# ----------------------------------------------------------------------------- summary


def test_histogram_buckets():
    assert (
        HISTOGRAM_BUCKETS[0] == "0-9" and HISTOGRAM_BUCKETS[-1] == "90-100" and len(HISTOGRAM_BUCKETS) == 10
    )
    assert [histogram_bucket(s) for s in (0, 9, 10, 89, 90, 100)] == [
        "0-9",
        "0-9",
        "10-19",
        "80-89",
        "90-100",
        "90-100",
    ]
    with pytest.raises(ValueError):
        histogram_bucket(101)
    assert sum(score_histogram([0, 55, 100]).values()) == 3


def test_build_summary():
    files = [
        {"source_file": "logs/a.jsonl", "status": "read", "reason": ""},
        {"source_file": "logs/b.jsonl.gz", "status": "quarantined", "reason": "truncated_compressed_file"},
        {"source_file": "readme.xml", "status": "not_recognised", "reason": "outside_data_folders"},
    ]
    connector = {
        "records_read": 10,
        "records_accepted": 8,
        "records_quarantined": 2,
        "files_read": 1,
        "quarantine_reasons": {"invalid_json": 1, "bad_amount": 1},
        "files": files,
        "partial": True,
        "unmapped_event_types": {"LOGIN_SUCCESS": 3},
    }
    organizer = {
        "input": 8,
        "duplicates": 1,
        "other_days": {"2025-11-20": 1},
        "from_inbox": {"2025-11-22": 2},
        "organized": 6,
        "per_hour": [0] * 24,
    }
    risk = [
        {"risk_score": 0, "is_flagged": False},
        {"risk_score": 75, "is_flagged": True},
        {"risk_score": 100, "is_flagged": True},
    ]
    signals = {"size": 0.6, "lockstep": 1.0}
    rings = [
        {
            "campaign_id": f"cmp-{i:012d}",
            "size": 5,
            "score": 60 + i,
            "is_fraud_ring": True,
            "signals": signals,
            "members": [],
            "nodes": [],
        }
        for i in range(12)
    ]
    campaigns = [
        *rings,
        {"campaign_id": "cmp-h", "size": 3, "score": 14, "is_fraud_ring": False, "signals": {}},
    ]
    summary = build_summary("demo", "2025-11-21", connector, organizer, risk, campaigns)
    assert list(summary) == [
        "client",
        "date",
        "records_read",
        "records_accepted",
        "records_quarantined",
        "quarantine_reasons",
        "partial",
        "files_read",
        "files_quarantined",
        "files_not_recognised",
        "unmapped_event_types",
        "duplicates",
        "records_to_other_days",
        "records_from_other_days",
        "other_days",
        "users",
        "flagged_users",
        "campaigns",
        "fraud_rings",
        "score_histogram",
        "top_campaigns",
    ]
    assert {k: v for k, v in summary.items() if k not in ("score_histogram", "top_campaigns")} == {
        "client": "demo",
        "date": "2025-11-21",
        "records_read": 10,
        "records_accepted": 8,
        "records_quarantined": 2,
        "quarantine_reasons": {"bad_amount": 1, "invalid_json": 1},
        "partial": True,
        "files_read": 1,
        "files_quarantined": [{"source_file": "logs/b.jsonl.gz", "reason": "truncated_compressed_file"}],
        "files_not_recognised": [{"source_file": "readme.xml", "reason": "outside_data_folders"}],
        "unmapped_event_types": {"LOGIN_SUCCESS": 3},
        "duplicates": 1,
        "records_to_other_days": 1,
        "records_from_other_days": 2,
        "other_days": {"2025-11-20": {"received": 0, "sent": 1}, "2025-11-22": {"received": 2, "sent": 0}},
        "users": 3,
        "flagged_users": 2,
        "campaigns": 13,
        "fraud_rings": 12,
    }
    assert summary["score_histogram"] == {
        **dict.fromkeys(HISTOGRAM_BUCKETS, 0),
        "0-9": 1,
        "70-79": 1,
        "90-100": 1,
    }
    assert [c["score"] for c in summary["top_campaigns"]] == list(range(71, 61, -1))
    assert summary["top_campaigns"][0] == {
        "campaign_id": "cmp-000000000011",
        "size": 5,
        "score": 71,
        "signals": {"lockstep": 1.0, "size": 0.6},
    }
