"""The day report: one self-contained HTML page (inline CSS and SVG, no scripts, no network)."""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping
from typing import Any

TOP_CAMPAIGNS = 10
_LABELLED_USERS = 30  # above this many users, user labels would overlap; their titles remain

# Colours picked to stay apart for colour-blind readers and on paper.
_EVENTS = "#4c78a8"
_FLAGGED = "#e45756"
_GRID = "#d0d4da"
_KIND_COLOURS = {
    "user": "#4c78a8",
    "device": "#f58518",
    "ip": "#54a24b",
    "ip_block": "#88d27a",
    "fingerprint": "#b279a2",
    "phone": "#eeca3b",
    "email_domain": "#9d755d",
}
_OTHER_KIND = "#79706e"

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1f2328;background:#f6f8fa}
header{background:#1f2a44;color:#fff;padding:18px 28px}
header h1{margin:0 0 6px;font-size:22px}
header .meta{font-size:14px;opacity:.85}
header .meta span{margin-right:22px}
main{padding:18px 28px;max-width:1100px}
section{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:14px 18px;margin-bottom:18px}
h2{font-size:17px;margin:0 0 12px}
.figures{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:10px}
.figure{border:1px solid #d0d7de;border-radius:6px;padding:8px 10px}
.figure .v{font-size:20px;font-weight:600}
.figure .k{font-size:12px;color:#57606a}
table{border-collapse:collapse;font-size:14px}
th,td{border-bottom:1px solid #eaeef2;padding:4px 12px 4px 0;text-align:left}
td.n,th.n{text-align:right}
code{font-size:13px}
svg{max-width:100%;height:auto}
svg text{font-size:11px;fill:#57606a}
.legend span{display:inline-block;margin-right:14px;font-size:13px}
.swatch{display:inline-block;width:11px;height:11px;margin-right:4px;vertical-align:middle}
.empty{color:#57606a;font-style:italic}
.warn{background:#fff8c5;border:1px solid #d4a72c;padding:6px 10px;border-radius:6px}
"""


def _e(value: object) -> str:
    """HTML-escaped text of any value, quotes included (safe in text and attributes)."""
    return html.escape("" if value is None else str(value), quote=True)


def _num(value: object) -> str:
    """A count with thousands separators; anything else as text; missing as an em dash."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.1f}"
    return str(value)


def _pct(value: float | None) -> str:
    """A 0-1 ratio as a percentage, "n/a" when undefined."""
    return "n/a" if value is None else f"{value * 100:.1f} %"


def _fmt(x: float) -> str:
    """SVG coordinate with at most 2 decimals, so output is stable and small."""
    text = f"{x:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _figure(label: str, value: str) -> str:
    """One key-figure card."""
    return f'<div class="figure"><div class="v">{_e(value)}</div><div class="k">{_e(label)}</div></div>'


def _table(headers: Iterable[tuple[str, bool]], rows: Iterable[Iterable[tuple[object, bool]]]) -> str:
    """A table; each header and cell is (text, numeric) so numbers align right."""
    head = "".join(f"<th{' class=n' if n else ''}>{_e(h)}</th>" for h, n in headers)
    body = "".join(
        "<tr>" + "".join(f"<td{' class=n' if n else ''}>{_e(c)}</td>" for c, n in row) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _nice_max(value: float) -> float:
    """A round axis maximum at or above value (1, 2 or 5 times a power of ten)."""
    if value <= 0:
        return 1
    power: float = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * power:
            return step * power
    return 10 * power


def _axis(left: float, top: float, width: float, height: float, ymax: float) -> str:
    """Horizontal grid lines with labels at 0, ½ and the top of the axis."""
    parts = []
    for frac in (0, 0.5, 1):
        y = top + height - frac * height
        label = ymax * frac
        if label != int(label):
            continue  # a count axis has no half users; skip the middle line on tiny axes
        text = f"{label:,.0f}"
        parts.append(
            f'<line x1="{_fmt(left)}" y1="{_fmt(y)}" x2="{_fmt(left + width)}" y2="{_fmt(y)}" '
            f'stroke="{_GRID}" stroke-width="1"/>'
        )
        parts.append(f'<text x="{_fmt(left - 6)}" y="{_fmt(y + 4)}" text-anchor="end">{_e(text)}</text>')
    return "".join(parts)


def distribution_svg(distribution: Mapping[str, Any]) -> str:
    """Bar chart of users per score bucket with the flag threshold as a dashed line."""
    buckets = list(distribution.get("buckets") or [])
    threshold = distribution.get("flag_threshold")
    width, height, left, top, bottom = 620, 250, 50, 20, 40
    plot_w, plot_h = width - left - 20, height - top - bottom
    ymax = _nice_max(max((b["count"] for b in buckets), default=0))
    slot = plot_w / max(len(buckets), 1)
    parts = [_axis(left, top, plot_w, plot_h, ymax)]
    for i, b in enumerate(buckets):
        h = plot_h * b["count"] / ymax
        x = left + i * slot + slot * 0.1
        y = top + plot_h - h
        high_risk = threshold is not None and b["low"] >= threshold
        colour = _FLAGGED if high_risk else _EVENTS
        parts.append(
            f'<rect x="{_fmt(x)}" y="{_fmt(y)}" width="{_fmt(slot * 0.8)}" height="{_fmt(h)}" '
            f'fill="{colour}"><title>{_e(b["bucket"])}: {_e(_num(b["count"]))} '
            f"{'user' if b['count'] == 1 else 'users'}</title></rect>"
        )
        parts.append(
            f'<text x="{_fmt(x + slot * 0.4)}" y="{_fmt(y - 4)}" text-anchor="middle">'
            f"{_e(_num(b['count']))}</text>"
        )
        parts.append(
            f'<text x="{_fmt(x + slot * 0.4)}" y="{_fmt(top + plot_h + 16)}" text-anchor="middle">'
            f"{_e(b['bucket'])}</text>"
        )
    if threshold is not None and buckets:
        # Place the line inside its bucket in proportion; the last bucket spans 11 points (90-100).
        t = min(max(float(threshold), 0.0), 100.0)
        i = min(int(t // 10), len(buckets) - 1)
        span = buckets[i]["high"] - buckets[i]["low"] + 1
        x = left + (i + (t - buckets[i]["low"]) / span) * slot
        parts.append(
            f'<line x1="{_fmt(x)}" y1="{_fmt(top - 6)}" x2="{_fmt(x)}" y2="{_fmt(top + plot_h)}" '
            f'stroke="#1f2328" stroke-width="1.5" stroke-dasharray="5 3"/>'
        )
        parts.append(f'<text x="{_fmt(x + 4)}" y="{_fmt(top + 4)}">flag threshold {_e(threshold)}</text>')
    parts.append(
        f'<text x="{_fmt(left + plot_w / 2)}" y="{height - 4}" text-anchor="middle">risk score</text>'
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-label="users per risk score bucket">{"".join(parts)}</svg>'
    )


def timeline_svg(timeline: Mapping[str, Any]) -> str:
    """Bars of events per hour with the events of flagged users drawn in front of them."""
    points = list(timeline.get("points") or [])
    width, height, left, top, bottom = 720, 250, 60, 16, 40
    plot_w, plot_h = width - left - 20, height - top - bottom
    ymax = _nice_max(max((p["events"] for p in points), default=0))
    slot = plot_w / max(len(points), 1)
    parts = [_axis(left, top, plot_w, plot_h, ymax)]
    for i, p in enumerate(points):
        hour = int(p["hour"])
        x = left + i * slot + slot * 0.12
        bar_w = slot * 0.76
        for value, colour, what in (
            (p["events"], _EVENTS, "events"),
            (p["flagged_events"], _FLAGGED, "flagged events"),
        ):
            h = plot_h * value / ymax
            parts.append(
                f'<rect x="{_fmt(x)}" y="{_fmt(top + plot_h - h)}" width="{_fmt(bar_w)}" '
                f'height="{_fmt(h)}" fill="{colour}"><title>{hour:02d}:00 '
                f"{_e(_num(value))} {what}</title></rect>"
            )
        if hour % 3 == 0:
            parts.append(
                f'<text x="{_fmt(x + bar_w / 2)}" y="{_fmt(top + plot_h + 16)}" '
                f'text-anchor="middle">{hour:02d}</text>'
            )
    tz = timeline.get("timezone") or ""
    parts.append(
        f'<text x="{_fmt(left + plot_w / 2)}" y="{height - 4}" text-anchor="middle">'
        f"hour of day ({_e(tz)})</text>"
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-label="events per hour">{"".join(parts)}</svg>'
    )


def graph_svg(graph: Mapping[str, Any]) -> str:
    """The campaign graph as circles (users and shared attributes) joined by lines."""
    size, pad = 560, 70
    inner = size - 2 * pad
    nodes = list(graph.get("nodes") or [])
    pos = {n["id"]: (pad + float(n["x"]) * inner, pad + float(n["y"]) * inner) for n in nodes}
    links = list(graph.get("links") or [])
    wmax = max((int(lk.get("weight") or 0) for lk in links), default=1) or 1
    # Fewer, larger circles for small campaigns; big ones must still fit on the ring.
    users = sum(1 for n in nodes if n.get("kind") == "user")
    user_r = max(2.5, min(9.0, 700 / max(users, 1) / 4))
    parts = []
    for lk in links:
        if lk["source"] not in pos or lk["target"] not in pos:
            continue
        (x1, y1), (x2, y2) = pos[lk["source"]], pos[lk["target"]]
        stroke = 0.6 + 2.4 * math.sqrt(int(lk.get("weight") or 0) / wmax)
        parts.append(
            f'<line x1="{_fmt(x1)}" y1="{_fmt(y1)}" x2="{_fmt(x2)}" y2="{_fmt(y2)}" stroke="#8c959f" '
            f'stroke-opacity="0.6" stroke-width="{_fmt(stroke)}"><title>{_e(lk["source"])} → '
            f"{_e(lk['target'])}: {_e(_num(lk.get('weight')))} events</title></line>"
        )
    labels: list[str] = []
    for n in nodes:
        x, y = pos[n["id"]]
        kind = str(n.get("kind") or "")
        colour = _KIND_COLOURS.get(kind, _OTHER_KIND)
        r = user_r if kind == "user" else 11
        label = str(n.get("label") or n["id"])
        parts.append(
            f'<circle cx="{_fmt(x)}" cy="{_fmt(y)}" r="{_fmt(r)}" fill="{colour}" stroke="#fff" '
            f'stroke-width="1"><title>{_e(kind)} {_e(label)}</title></circle>'
        )
        if kind != "user" or users <= _LABELLED_USERS:
            # Labels point away from the centre so they clear the lines on the ring.
            dx, dy = x - size / 2, y - size / 2
            dist = math.hypot(dx, dy) or 1.0
            lx, ly = x + dx / dist * (r + 4), y + dy / dist * (r + 4) + 4
            anchor = "middle" if abs(dx) < dist * 0.3 else ("start" if dx > 0 else "end")
            short = label if len(label) <= 24 else label[:23] + "…"
            labels.append(f'<text x="{_fmt(lx)}" y="{_fmt(ly)}" text-anchor="{anchor}">{_e(short)}</text>')
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {size} {size}" width="{size}" '
        f'height="{size}" role="img" aria-label="campaign graph">{"".join(parts + labels)}</svg>'
    )


def _graph_legend(graph: Mapping[str, Any]) -> str:
    """Colour legend of the node kinds present in the graph, users first."""
    kinds = sorted(
        {str(n.get("kind") or "") for n in graph.get("nodes") or []}, key=lambda k: (k != "user", k)
    )
    return (
        '<p class="legend">'
        + "".join(
            f'<span><i class="swatch" style="background:{_KIND_COLOURS.get(k, _OTHER_KIND)}"></i>{_e(k)}</span>'
            for k in kinds
        )
        + "</p>"
    )


def _key_figures(
    summary: Mapping[str, Any], campaigns: Mapping[str, Any], labeling: Mapping[str, Any] | None
) -> str:
    """Cards of the day's headline counts, plus precision/recall when labels exist."""
    figures = [
        ("records read", _num(summary.get("records_read"))),
        ("records accepted", _num(summary.get("records_accepted"))),
        ("records quarantined", _num(summary.get("records_quarantined"))),
        ("active users", _num(summary.get("users"))),
        ("flagged users", _num(summary.get("flagged_users"))),
        ("campaigns", _num(summary.get("campaigns", campaigns.get("count")))),
        ("fraud rings", _num(summary.get("fraud_rings"))),
    ]
    if labeling is not None:
        figures += [
            ("precision", _pct(labeling.get("precision"))),
            ("recall", _pct(labeling.get("recall"))),
            ("labelled active users", _num(labeling.get("labelled_active_users"))),
        ]
    return '<div class="figures">' + "".join(_figure(k, v) for k, v in figures) + "</div>"


def _campaign_table(campaigns: Mapping[str, Any]) -> str:
    """Table of the highest-scoring campaigns."""
    items = list(campaigns.get("campaigns") or [])[:TOP_CAMPAIGNS]
    if not items:
        return '<p class="empty">No campaign was found in this day.</p>'
    rows = [
        [
            (c["campaign_id"], False),
            (_num(c.get("size")), True),
            (_num(c.get("score")), True),
            ("yes" if c.get("is_fraud_ring") else "no", False),
            (", ".join(c.get("top_signals") or []), False),
        ]
        for c in items
    ]
    note = ""
    if len(campaigns.get("campaigns") or []) > TOP_CAMPAIGNS:
        note = f'<p class="empty">Top {TOP_CAMPAIGNS} of {_e(_num(campaigns.get("count")))} campaigns.</p>'
    return (
        _table(
            [
                ("campaign", False),
                ("size", True),
                ("score", True),
                ("fraud ring", False),
                ("top signals", False),
            ],
            rows,
        )
        + note
    )


def _stage_table(stage_seconds: Mapping[str, Any]) -> str:
    """Table of wall time per stage, with each stage's share of the total."""
    total = float(stage_seconds.get("total") or 0)
    rows = []
    for stage, secs in stage_seconds.items():
        share = f"{100 * float(secs) / total:.0f} %" if total and stage != "total" else ""
        rows.append(
            [(stage, False), (f"{float(secs):,.1f}", True), (f"{float(secs) / 60:,.1f}", True), (share, True)]
        )
    return _table([("stage", False), ("seconds", True), ("minutes", True), ("share", True)], rows)


def _quarantine_table(reasons: Mapping[str, Any]) -> str:
    """Table of quarantined records per reason, most frequent first."""
    if not reasons:
        return '<p class="empty">No record was quarantined.</p>'
    ordered = sorted(reasons.items(), key=lambda kv: (-int(kv[1]), str(kv[0])))
    return _table(
        [("reason", False), ("records", True)], [[(r, False), (_num(int(n)), True)] for r, n in ordered]
    )


def _day_state(summary: Mapping[str, Any]) -> str:
    """A line that says whether the day is final and complete, when either is not so."""
    notes = []
    if summary.get("final") is False:
        notes.append(
            f"Provisional: {summary.get('final_reason') or 'the day is not closed yet'}. "
            "Files that land before the close are added by the next run."
        )
    if summary.get("partial"):
        notes.append(
            f"Partial: {len(summary.get('files_quarantined') or [])} file(s) could not be read "
            "and were set aside (see Input files)."
        )
    return "".join(f'<p class="warn"><b>{_e(n)}</b></p>' for n in notes)


def _input_files(summary: Mapping[str, Any]) -> str:
    """The day's files that were set aside or not read, unmapped event types, records of other days."""
    parts = [f"<p>{_e(_num(summary.get('files_read')))} files read.</p>"]
    for key, title in (
        ("files_quarantined", "Set aside as a whole (a copy is kept with the reason)"),
        ("files_not_recognised", "Not read (not a data file by its name or place)"),
    ):
        files = summary.get(key) or []
        if files:
            parts.append(
                f"<h3>{_e(title)}</h3>"
                + _table(
                    [("file", False), ("reason", False)],
                    [[(f.get("source_file"), False), (f.get("reason"), False)] for f in files],
                )
            )
    unmapped = summary.get("unmapped_event_types") or {}
    if unmapped:
        parts.append(
            "<h3>Event types the features do not know (map them with event_types)</h3>"
            + _table(
                [("event type", False), ("records", True)],
                [
                    [(k, False), (_num(v), True)]
                    for k, v in sorted(unmapped.items(), key=lambda kv: -int(kv[1]))
                ],
            )
        )
    other = summary.get("other_days") or {}
    if other:
        parts.append(
            "<h3>Records of other client-local days</h3>"
            + _table(
                [("day", False), ("sent there", True), ("received from there", True)],
                [
                    [(d, False), (_num(v.get("sent")), True), (_num(v.get("received")), True)]
                    for d, v in sorted(other.items())
                ],
            )
        )
    return "".join(parts)


def _labeling_table(labeling: Mapping[str, Any]) -> str:
    """Confusion counts and f1 against client labels, with how unscored users are treated."""
    rows = [
        [(k, False), (_num(labeling.get(k)), True)]
        for k in (
            "tp",
            "fp",
            "fn",
            "tn",
            "labelled_users",
            "labelled_active_users",
            "unscored_labelled_users",
        )
        if k in labeling
    ]
    rows.append([("f1", False), (_pct(labeling.get("f1")), True)])
    note = (
        '<p class="empty">Labelled users with no activity this day are unscored: they are left out '
        "of the counts above, not counted as negatives.</p>"
    )
    return _table([("measure", False), ("value", True)], rows) + note


def render_report(
    summary: dict[str, Any],
    campaigns: dict[str, Any],
    timeline: dict[str, Any],
    distribution: dict[str, Any],
    graph: dict[str, Any] | None,
    labeling: dict[str, Any] | None,
) -> str:
    """The day report as one HTML page; the same inputs give the same bytes."""
    client, date = summary.get("client", ""), summary.get("date", "")
    meta = [("client", client), ("date", date), ("run", summary.get("run_id") or "—")]
    if summary.get("code_version"):
        meta.append(("code", summary["code_version"]))
    sections = [
        f"<section><h2>Key figures</h2>{_day_state(summary)}{_key_figures(summary, campaigns, labeling)}</section>",
        "<section><h2>Risk score distribution</h2>"
        f"<p>{_e(_num(distribution.get('total')))} users scored, {_e(_num(distribution.get('flagged')))} at or "
        f"above the flag threshold of {_e(distribution.get('flag_threshold'))}.</p>"
        f"{distribution_svg(distribution)}</section>",
        "<section><h2>Events per hour</h2>"
        f'<p class="legend"><span><i class="swatch" style="background:{_EVENTS}"></i>all events</span>'
        f'<span><i class="swatch" style="background:{_FLAGGED}"></i>events of flagged users</span></p>'
        f"{timeline_svg(timeline)}</section>",
        f"<section><h2>Top campaigns</h2>{_campaign_table(campaigns)}</section>",
    ]
    if graph:
        sections.append(
            f"<section><h2>Top campaign <code>{_e(graph.get('campaign_id'))}</code></h2>"
            f"<p>{_e(_num(graph.get('users_count')))} users sharing "
            f"{_e(_num(graph.get('shared_nodes_count')))} attributes.</p>"
            f"{_graph_legend(graph)}{graph_svg(graph)}</section>"
        )
    if labeling is not None:
        sections.append(f"<section><h2>Against client labels</h2>{_labeling_table(labeling)}</section>")
    if summary.get("stage_seconds"):
        sections.append(f"<section><h2>Stage times</h2>{_stage_table(summary['stage_seconds'])}</section>")
    sections.append(
        "<section><h2>Quarantine reasons</h2>"
        f"{_quarantine_table(summary.get('quarantine_reasons') or {})}</section>"
    )
    sections.append(f"<section><h2>Input files</h2>{_input_files(summary)}</section>")
    title = f"Fraud report {client} {date}"
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<style>{_CSS}</style></head><body>\n"
        f'<header><h1>Fraud analytics report</h1><div class="meta">'
        + "".join(f"<span>{_e(k)}: <b>{_e(v)}</b></span>" for k, v in meta)
        + "</div></header>\n<main>\n"
        + "\n".join(sections)
        + "\n</main></body></html>\n"
    )
