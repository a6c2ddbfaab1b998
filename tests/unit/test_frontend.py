"""Frontend data builders and the HTML day report."""

from __future__ import annotations

import re

import pytest

from fraudcore.frontend import campaign_graph, campaign_list, hourly_timeline, score_distribution
from fraudcore.report import render_report

CAMPAIGNS = [
    {
        "campaign_id": "cmp-b",
        "size": 2,
        "score": 80,
        "is_fraud_ring": False,
        "signals": {"shared_device": 0.9, "burst": 0.2, "night": 0.5, "new_accounts": 0.5},
        "members": ["u1", "u2"],
        "nodes": ["device:d1"],
    },
    {
        "campaign_id": "cmp-a",
        "size": 3,
        "score": 80,
        "is_fraud_ring": True,
        "signals": {"shared_ip": 1.0},
        "members": ["u3", "u4", "u5"],
        "nodes": ["ip:1.2.3.4", "phone:555"],
    },
    {
        "campaign_id": "cmp-c",
        "size": 2,
        "score": 95,
        "is_fraud_ring": True,
        "signals": {},
        "members": ["u6", "u7"],
        "nodes": [],
    },
]


def test_campaign_list_orders_by_score_then_id_and_picks_top_signals():
    out = campaign_list(CAMPAIGNS)
    assert out["count"] == 3
    assert [c["campaign_id"] for c in out["campaigns"]] == ["cmp-c", "cmp-a", "cmp-b"]
    assert out["campaigns"][2] == {
        "campaign_id": "cmp-b",
        "size": 2,
        "score": 80,
        "is_fraud_ring": False,
        # night and new_accounts tie at 0.5: name order decides
        "top_signals": ["shared_device", "new_accounts", "night"],
        "members_count": 2,
        "shared_nodes_count": 1,
    }
    assert out["campaigns"][1]["top_signals"] == ["shared_ip"]
    assert out["campaigns"][0]["top_signals"] == []


def test_campaign_list_empty():
    assert campaign_list([]) == {"campaigns": [], "count": 0}


GRAPH_CAMPAIGN = {
    "campaign_id": "cmp-x",
    "score": 88,
    "is_fraud_ring": True,
    "members": ["u2", "u1", "u3", "u4"],
    "nodes": ["ip:9.9.9.9", "device:d1", "ip:1.1.1.1"],
}
GRAPH_EDGES = [
    {"user_id": "u1", "node_id": "device:d1", "node_type": "device", "events": 3},
    {"user_id": "u2", "node_id": "device:d1", "node_type": "device", "events": 5},
    {"user_id": "u1", "node_id": "ip:9.9.9.9", "node_type": "ip", "events": 2},
    {"user_id": "u2", "node_id": "ip:9.9.9.9", "node_type": "ip", "events": 1},
    {"user_id": "u3", "node_id": "ip:1.1.1.1", "node_type": "ip", "events": 7},
    {"user_id": "u9", "node_id": "device:d1", "node_type": "device", "events": 4},  # not a member
    {"user_id": "u4", "node_id": "device:d2", "node_type": "device", "events": 4},  # not shared
]
NODE_INFO = {
    "device:d1": {"node_type": "device", "node_value": "d1", "users": 3, "is_super": False},
    "ip:9.9.9.9": {"node_type": "ip", "node_value": "9.9.9.9", "users": 2, "is_super": False},
    "ip:1.1.1.1": {"node_type": "ip", "node_value": "1.1.1.1", "users": 900, "is_super": True},
}


def test_campaign_graph_nodes_links_and_layout():
    g = campaign_graph(GRAPH_CAMPAIGN, GRAPH_EDGES, NODE_INFO)
    assert g["campaign_id"] == "cmp-x"
    assert [(n["id"], n["kind"]) for n in g["nodes"]] == [
        ("u1", "user"),
        ("u2", "user"),
        ("u3", "user"),
        ("u4", "user"),
        ("device:d1", "device"),
        ("ip:9.9.9.9", "ip"),
    ]
    assert g["links"] == [
        {"source": "u1", "target": "device:d1", "weight": 3},
        {"source": "u1", "target": "ip:9.9.9.9", "weight": 2},
        {"source": "u2", "target": "device:d1", "weight": 5},
        {"source": "u2", "target": "ip:9.9.9.9", "weight": 1},
    ]
    assert (g["users_count"], g["shared_nodes_count"]) == (4, 2)
    pos = {n["id"]: (n["x"], n["y"]) for n in g["nodes"]}
    # four users on the outer ring: top, right, bottom, left
    assert pos["u1"] == (0.5, 0.05)
    assert pos["u2"] == (0.95, 0.5)
    assert pos["u3"] == (0.5, 0.95)
    assert pos["u4"] == (0.05, 0.5)
    # two attribute nodes on the inner ring
    assert pos["device:d1"] == (0.5, 0.28)
    assert pos["ip:9.9.9.9"] == (0.5, 0.72)
    assert all(0 <= v <= 1 for xy in pos.values() for v in xy)


def test_campaign_graph_is_deterministic_regardless_of_input_order():
    a = campaign_graph(GRAPH_CAMPAIGN, GRAPH_EDGES, NODE_INFO)
    b = campaign_graph(
        dict(GRAPH_CAMPAIGN, members=["u4", "u3", "u2", "u1"]), list(reversed(GRAPH_EDGES)), NODE_INFO
    )
    assert a == b


def test_campaign_graph_single_attribute_node_is_centred_and_kind_falls_back_to_prefix():
    g = campaign_graph(
        {"campaign_id": "c", "members": ["a", "b"], "nodes": ["phone:1"]},
        [{"user_id": "a", "node_id": "phone:1", "events": 1}],
        {},
    )
    phone = g["nodes"][-1]
    assert (phone["kind"], phone["label"], phone["x"], phone["y"]) == ("phone", "1", 0.5, 0.5)


def test_hourly_timeline():
    events = list(range(24))
    flagged = [0] * 23 + [5]
    t = hourly_timeline(events, flagged, "Europe/Paris")
    assert t["timezone"] == "Europe/Paris"
    assert len(t["points"]) == 24
    assert t["points"][0] == {"hour": 0, "events": 0, "flagged_events": 0}
    assert t["points"][23] == {"hour": 23, "events": 23, "flagged_events": 5}
    assert (t["total_events"], t["total_flagged_events"]) == (276, 5)


@pytest.mark.parametrize(
    "events, flagged, tz",
    [([1] * 23, [0] * 23, "UTC"), ([1] * 24, [2] + [0] * 23, "UTC"), ([1] * 24, [0] * 24, "Mars/Olympus")],
)
def test_hourly_timeline_rejects_bad_input(events, flagged, tz):
    with pytest.raises(ValueError):
        hourly_timeline(events, flagged, tz)


def test_score_distribution_buckets_and_threshold():
    d = score_distribution([0, 9, 10, 69, 70, 89, 90, 100, 100], 70)
    counts = {b["bucket"]: b["count"] for b in d["buckets"]}
    assert list(counts) == [
        "0-9",
        "10-19",
        "20-29",
        "30-39",
        "40-49",
        "50-59",
        "60-69",
        "70-79",
        "80-89",
        "90-100",
    ]
    assert counts == {
        "0-9": 2,
        "10-19": 1,
        "20-29": 0,
        "30-39": 0,
        "40-49": 0,
        "50-59": 0,
        "60-69": 1,
        "70-79": 1,
        "80-89": 1,
        "90-100": 3,
    }
    assert (d["total"], d["flagged"], d["flag_threshold"]) == (9, 5, 70)


def test_score_distribution_rejects_out_of_range():
    with pytest.raises(ValueError):
        score_distribution([101], 70)


def _report_inputs(client: str = "acme", hostile: bool = False) -> tuple:
    campaigns = list(CAMPAIGNS)
    if hostile:
        campaigns.append(
            {
                "campaign_id": "<script>alert(1)</script>",
                "size": 2,
                "score": 99,
                "is_fraud_ring": False,
                "signals": {"<b>x</b>": 1.0},
                "members": ["<u>", "v"],
                "nodes": ["device:<img>"],
            }
        )
    clist = campaign_list(campaigns)
    top = next(c for c in campaigns if c["campaign_id"] == clist["campaigns"][0]["campaign_id"])
    edges = [
        {"user_id": u, "node_id": n, "node_type": "device", "events": 2}
        for u in top["members"]
        for n in top["nodes"]
    ]
    graph = campaign_graph(top, edges, {})
    summary = {
        "client": client,
        "date": "2024-05-01",
        "run_id": "run-1",
        "code_version": "abc123",
        "records_read": 1200,
        "records_accepted": 1190,
        "records_quarantined": 10,
        "quarantine_reasons": {"bad event_time": 7, "missing user_id": 3},
        "users": 9,
        "flagged_users": 5,
        "campaigns": clist["count"],
        "fraud_rings": 2,
        "stage_seconds": {"ingest": 12.5, "aggregation": 30.0, "total": 42.5},
    }
    timeline = hourly_timeline([10] * 24, [1] * 24, "UTC")
    distribution = score_distribution([0, 50, 75, 95], 70)
    labeling = {
        "tp": 3,
        "fp": 1,
        "fn": 1,
        "tn": 4,
        "precision": 0.75,
        "recall": 0.75,
        "f1": 0.75,
        "labelled_users": 10,
        "labelled_active_users": 9,
        "unscored_labelled_users": 1,
    }
    return summary, clist, timeline, distribution, graph, labeling


def test_report_is_self_contained_with_a_chart_per_section():
    page = render_report(*_report_inputs(client="acme&co"))
    assert page.startswith("<!DOCTYPE html>")
    assert "acme&amp;co" in page and "acme&co" not in page
    assert page.count("<svg") == 3  # score distribution, hourly timeline, campaign graph
    assert "<script" not in page and "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    for text in (
        "1,200",
        "1,190",
        "run-1",
        "flag threshold 70",
        "75.0 %",
        "bad event_time",
        "cmp-c",
        "shared_device, new_accounts, night",
        "Stage times",
    ):
        assert text in page, text
    # the graph draws one circle per node and one line per link
    graph_svg = page[page.index('aria-label="campaign graph"') :]
    assert graph_svg.count("<circle") == 2  # cmp-c: two members, no shared nodes
    assert graph_svg.count("<line") == 0


def test_report_escapes_hostile_campaign_ids():
    page = render_report(*_report_inputs(hostile=True))
    assert "<script" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page
    assert "<img" not in page and "<u>" not in page
    graph_svg = page[page.index('aria-label="campaign graph"') :]
    assert graph_svg.count("<circle") == 3 and graph_svg.count("<line") == 2


def test_report_is_deterministic_and_handles_missing_parts():
    inputs = _report_inputs()
    assert render_report(*inputs) == render_report(*inputs)
    summary, clist, timeline, distribution, _, _ = inputs
    bare = {k: v for k, v in summary.items() if k not in ("stage_seconds", "quarantine_reasons", "run_id")}
    page = render_report(
        bare,
        campaign_list([]),
        hourly_timeline([0] * 24, [0] * 24, "UTC"),
        score_distribution([], 70),
        None,
        None,
    )
    assert page.count("<svg") == 2
    assert "No campaign was found" in page and "No record was quarantined" in page
    assert "Stage times" not in page and "precision" not in page
    assert not re.search(r"\bnan\b|inf\b", page)


def test_report_says_a_day_is_provisional_and_partial_and_names_the_files():
    summary, clist, timeline, distribution, graph, labeling = _report_inputs()
    page = render_report(summary, clist, timeline, distribution, graph, labeling)
    assert "Provisional" not in page and "Partial" not in page and "Set aside" not in page
    summary = {
        **summary,
        "final": False,
        "final_reason": "provisional until 2024-05-02T02:00:00+00:00",
        "partial": True,
        "files_read": 3,
        "files_quarantined": [{"source_file": "logs/<cut>.jsonl.gz", "reason": "truncated_compressed_file"}],
        "files_not_recognised": [{"source_file": "readme.xml", "reason": "unknown_suffix"}],
        "unmapped_event_types": {"LOGIN_SUCCESS": 12},
        "other_days": {"2024-04-30": {"sent": 4, "received": 0}},
    }
    page = render_report(summary, clist, timeline, distribution, graph, labeling)
    for text in (
        "Provisional: provisional until 2024-05-02",
        "Partial: 1 file(s)",
        "Set aside as a whole",
        "logs/&lt;cut&gt;.jsonl.gz",
        "truncated_compressed_file",
        "readme.xml",
        "LOGIN_SUCCESS",
        "map them with event_types",
        "2024-04-30",
    ):
        assert text in page, text
    assert "<cut>" not in page
