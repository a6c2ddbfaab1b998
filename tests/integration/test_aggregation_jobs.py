"""Campaign -> ResultAggLite -> EventJoinLite -> ResultAgg on a tiny hand-made client-day, in-process."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fraudcore.atomic import write_json
from fraudcore.campaigns import campaign_id
from fraudcore.ingest import EVENT_FIELDS
from fraudcore.paths import DONE, read_json
from jobs.common import read_parquet_rows
from tests.support.stages import VIRTUAL_EDGES, VIRTUAL_NODES

DAY = "2025-11-21"
T0 = 1_763_719_200_000  # 10:00 UTC
MIN = 60_000
HOUR = 60 * MIN

# user: (new account, first activity, logins, failed logins, velocity, event hours)
USERS = {
    # A ring on one device farm; r4 is a sleeper that only signed up and logged in on the farm device.
    "r1": (True, T0, 1, 2, 3, [10, 10]),
    "r2": (True, T0 + 3 * MIN, 1, 2, 3, [10]),
    "r3": (True, T0 + 6 * MIN, 1, 2, 3, [10]),
    "r4": (True, T0 + 9 * MIN, 1, 0, 0, [10]),
    # A household on one tablet, online at their own hours.
    "h1": (False, T0 - 3 * HOUR, 3, 0, 1, [7]),
    "h2": (False, T0 + 2 * HOUR, 2, 0, 0, [12]),
    "h3": (False, T0 + 8 * HOUR, 4, 0, 1, [18]),
    # Neighbours sharing only a /24, carrier-NAT users, two accounts sharing a phone.
    "w1": (False, T0, 2, 0, 0, [10]),
    "w2": (False, T0 + HOUR, 2, 0, 0, [11]),
    "n1": (False, T0, 2, 0, 0, [10]),
    "n2": (False, T0, 2, 0, 0, [10]),
    "p1": (False, T0 - HOUR, 2, 0, 0, [9]),
    "p2": (False, T0 + 5 * HOUR, 2, 0, 0, [15]),
    # A lone fraudster: new, fast and mostly failing logins; flagged without a campaign.
    "x1": (True, T0 - 7 * HOUR, 1, 3, 9, [3, 3, 4]),
}
NODES = {  # node_id: (users, is_super)
    "device:dev-farm": (["r1", "r2", "r3", "r4"], False),
    "fingerprint:fp-farm": (["r1", "r2", "r3"], False),
    "device:dev-tablet": (["h1", "h2", "h3"], False),
    "fingerprint:fp-tablet": (["h1", "h2", "h3"], False),
    "ip:68.1.2.3": (["h1", "h2", "h3"], False),
    "ip_block:24.5.6.0/24": (["w1", "w2"], False),
    "ip:172.56.1.1": (["n1", "n2"], True),
    "phone:15551234567": (["p1", "p2"], False),
    "email_domain:gmail.com": (["h1", "w1", "n1", "p1"], False),
    "device:dev-x1": (["x1"], False),
}


def _write(table: pa.Table, folder, name: str = "part-00000.parquet") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, str(folder / name))


def _done(stage) -> None:
    (stage / DONE).write_text("{}\n")


@pytest.fixture
def day(tmp_path):
    """The warehouse folder of demo/2025-11-21 holding every input stage; and the job arguments."""
    root = tmp_path / "demo" / DAY
    # connector and organized stats
    write_json(
        root / "connector" / "stats.json",
        {
            "records_read": 25,
            "records_accepted": 22,
            "records_quarantined": 3,
            "quarantine_reasons": {"bad_amount": 1, "invalid_json": 2},
            "files": 3,
            "by_source": {"logs": 10, "events": 8, "transactions": 4},
        },
    )
    _done(root / "connector")
    per_hour = [0] * 24
    events = []
    for uid, (*_, hours) in USERS.items():
        for k, h in enumerate(hours):
            per_hour[h] += 1
            events.append(
                (
                    h,
                    {f: None for f in EVENT_FIELDS}
                    | {
                        "event_id": f"e-{uid}-{k}",
                        "user_id": uid,
                        "event_time_ms": T0 + (h - 10) * HOUR + k * MIN,
                        "event_type": "login",
                        "source": "logs",
                        "source_file": "logs/a.jsonl",
                    },
                )
            )
    schema = pa.schema(
        [
            pa.field(
                f, pa.int64() if f == "event_time_ms" else pa.float64() if f == "amount" else pa.string()
            )
            for f in EVENT_FIELDS
        ]
    )
    for h in sorted({hh for hh, _ in events}):
        rows = [e for hh, e in events if hh == h]
        _write(pa.Table.from_pylist(rows, schema), root / "organized" / "events" / f"hour={h}")
    write_json(
        root / "organized" / "stats.json",
        {
            "input": 20,
            "duplicates": 1,
            "other_days": {"2025-11-20": 2},
            "from_inbox": {},
            "organized": len(events),
            "per_hour": per_hour,
        },
    )
    _done(root / "organized")
    # virtual nodes
    node_rows, edge_rows = [], []
    for nid, (users, sup) in NODES.items():
        kind, value = nid.split(":", 1)
        node_rows.append(
            {
                "node_id": nid,
                "node_type": kind,
                "node_value": value,
                "users": len(users),
                "events": 2 * len(users),
                "is_super": sup,
            }
        )
        edge_rows += [
            {
                "user_id": u,
                "node_id": nid,
                "node_type": kind,
                "events": 2,
                "first_ms": T0,
                "last_ms": T0 + MIN,
            }
            for u in users
        ]
    _write(pa.Table.from_pylist(node_rows, VIRTUAL_NODES), root / "virtual_nodes" / "nodes")
    _write(pa.Table.from_pylist(edge_rows, VIRTUAL_EDGES), root / "virtual_nodes" / "edges")
    _done(root / "virtual_nodes")
    # user_stats and DFE vectors
    stats, vectors = [], []
    for uid, (new, first, logins, failed, velocity, hours) in USERS.items():
        stats.append(
            {
                "user_id": uid,
                "events": len(hours) + logins,
                "logins": logins,
                "failed_logins": failed,
                "transactions": velocity,
                "amount_total": 10.0 * velocity,
                "amount_max": 10.0,
                "distinct_devices": 1,
                "distinct_ips": 1,
                "distinct_fingerprints": 1,
                "first_ms": first,
                "last_ms": first + MIN,
                "active_hours": len(set(hours)),
                "night_share": 0.0,
                "is_new_account": new,
                "max_tx_per_10min": velocity,
            }
        )
        ratio = failed / (logins + failed) if logins + failed else 0.0
        vectors.append(
            {
                "user_id": uid,
                "window_start_ms": T0 - 10 * HOUR,
                "features": [
                    ("transaction_velocity", float(velocity)),
                    ("login_failed_ratio", ratio),
                    ("is_new_account", 1.0 if new else 0.0),
                ],
            }
        )
    vectors.append({"user_id": "x1", "window_start_ms": T0, "features": [("transaction_velocity", 1.0)]})
    long = pa.int64()
    _write(
        pa.Table.from_pylist(
            stats,
            pa.schema(
                [
                    ("user_id", pa.string()),
                    ("events", long),
                    ("logins", long),
                    ("failed_logins", long),
                    ("transactions", long),
                    ("amount_total", pa.float64()),
                    ("amount_max", pa.float64()),
                    ("distinct_devices", long),
                    ("distinct_ips", long),
                    ("distinct_fingerprints", long),
                    ("first_ms", long),
                    ("last_ms", long),
                    ("active_hours", long),
                    ("night_share", pa.float64()),
                    ("is_new_account", pa.bool_()),
                    ("max_tx_per_10min", long),
                ]
            ),
        ),
        root / "user_stats" / "stats",
    )
    _done(root / "user_stats")
    _write(
        pa.Table.from_pylist(
            vectors,
            pa.schema(
                [
                    ("user_id", pa.string()),
                    ("window_start_ms", long),
                    ("features", pa.map_(pa.string(), pa.float64())),
                ]
            ),
        ),
        root / "dfe" / "vectors",
    )
    _done(root / "dfe")
    return root, ["--client", "demo", "--date", DAY, "--warehouse", str(tmp_path)]


@pytest.mark.spark
def test_aggregation_chain(day, spark, capsys):
    from jobs import campaign, event_join, result_agg, result_agg_lite

    root, args = day
    ring_id = campaign_id("demo", DAY, ["r1"])

    assert campaign.main(args) == 0
    campaigns = read_json(root / "campaigns" / "campaigns.json")
    assert [(c["members"], c["is_fraud_ring"]) for c in campaigns] == [
        (["r1", "r2", "r3", "r4"], True),
        (["h1", "h2", "h3"], False),
        (["p1", "p2"], False),
    ]
    assert campaigns[0]["campaign_id"] == ring_id
    assert campaigns[0]["score"] == 63
    assert campaigns[0]["nodes"] == ["device:dev-farm", "fingerprint:fp-farm"]
    assert campaigns[1]["score"] < 50
    assert read_json(root / "campaigns" / "stats.json") == {"campaigns": 3, "fraud_rings": 1, "members": 9}
    members = read_parquet_rows(root / "campaigns" / "members")
    assert [(m["user_id"], m["campaign_id"] == ring_id) for m in members][:4] == [
        ("h1", False),
        ("h2", False),
        ("h3", False),
        ("p1", False),
    ]
    assert sorted(m["user_id"] for m in members if m["campaign_id"] == ring_id) == ["r1", "r2", "r3", "r4"]
    assert "campaign demo 2025-11-21: campaigns=3 fraud_rings=1 members=9" in capsys.readouterr().out

    assert result_agg_lite.main(args) == 0
    risk = {r["user_id"]: r for r in read_parquet_rows(root / "risk" / "scores")}
    assert list(risk) == sorted(USERS)
    assert sorted(u for u, r in risk.items() if r["is_flagged"]) == ["r1", "r2", "r3", "r4", "x1"]
    assert risk["r4"] == {
        "user_id": "r4",
        "risk_score": 83,
        "is_flagged": True,
        "campaign_id": ring_id,
        "reason_codes": "RING_MEMBER;SHARED_DEVICE",
    }
    assert risk["x1"] == {
        "user_id": "x1",
        "risk_score": 75,
        "is_flagged": True,
        "campaign_id": "",
        "reason_codes": "FAILED_LOGINS;HIGH_TX_VELOCITY;NEW_ACCOUNT_SPEND",
    }
    assert risk["h2"]["reason_codes"] == "SHARED_DEVICE" and risk["h2"]["campaign_id"] == ""
    assert risk["n1"]["risk_score"] == 0
    assert read_json(root / "risk" / "stats.json") == {"users": 14, "flagged": 5}

    assert event_join.main(args) == 0
    joined = read_parquet_rows(root / "event_join" / "flagged_events")
    assert [(e["event_id"], e["risk_score"], e["campaign_id"]) for e in joined] == [
        ("e-x1-0", 75, ""),
        ("e-x1-1", 75, ""),
        ("e-x1-2", 75, ""),
        ("e-r1-0", 83, ring_id),
        ("e-r2-0", 83, ring_id),
        ("e-r3-0", 83, ring_id),
        ("e-r4-0", 83, ring_id),
        ("e-r1-1", 83, ring_id),
    ]
    per_hour = [0] * 24
    per_hour[3], per_hour[4], per_hour[10] = 2, 1, 5
    assert read_json(root / "event_join" / "stats.json") == {"flagged_events": 8, "per_hour": per_hour}

    assert result_agg.main(args) == 0
    summary = read_json(root / "result_agg" / "summary.json")
    assert {k: v for k, v in summary.items() if k not in ("score_histogram", "top_campaigns")} == {
        "client": "demo",
        "date": DAY,
        "records_read": 25,
        "records_accepted": 22,
        "records_quarantined": 3,
        "quarantine_reasons": {"bad_amount": 1, "invalid_json": 2},
        "duplicates": 1,
        "records_to_other_days": 2,
        "records_from_other_days": 0,
        "other_days": {"2025-11-20": {"received": 0, "sent": 2}},
        "partial": False,
        "files_read": 0,
        "files_quarantined": [],
        "files_not_recognised": [],
        "unmapped_event_types": {},
        "users": 14,
        "flagged_users": 5,
        "campaigns": 3,
        "fraud_rings": 1,
    }
    assert summary["score_histogram"]["0-9"] == 6 and summary["score_histogram"]["10-19"] == 3
    assert summary["score_histogram"]["80-89"] == 4 and summary["score_histogram"]["70-79"] == 1
    assert summary["top_campaigns"] == [
        {"campaign_id": ring_id, "size": 4, "score": 63, "signals": campaigns[0]["signals"]}
    ]
    for stage in ("campaigns", "risk", "event_join", "result_agg"):
        assert (root / stage / DONE).is_file()


def test_missing_input_stage_fails_with_message(tmp_path, capsys):
    from jobs import result_agg

    args = ["--client", "demo", "--date", DAY, "--warehouse", str(tmp_path)]
    assert result_agg.main(args) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"result_agg: error: RuntimeError: connector stage is not complete: {tmp_path / 'demo' / DAY / 'connector'} "
        "has no _DONE"
    )
    assert not (tmp_path / "demo" / DAY / "result_agg").exists()
