"""The dashboard data, the day's summary and HTML report, and the staged results folder."""

from __future__ import annotations

import shutil
import uuid
from typing import Any

from fraudcore import snapshot
from fraudcore.atomic import write_json
from fraudcore.paths import DONE, WorkPaths, done_meta, read_json
from pipeline.day import ClientDay
from pipeline.runs import RunInfo
from pipeline.warehouse import campaigns, labeling_doc, risk_rows

GRAPHS_FOR = 25  # campaign graphs published: every fraud ring, then the highest scores up to this


def frontend_campaigns(day: ClientDay) -> dict[str, Any]:
    """frontend_campaigns/: the campaign list and one graph per published campaign."""
    import pyarrow.dataset as ds

    from fraudcore.frontend import campaign_graph, campaign_list

    paths = day.paths
    every = campaigns(paths)
    chosen = [c for c in every if c.get("is_fraud_ring")]
    chosen += [c for c in every if not c.get("is_fraud_ring")][: max(0, GRAPHS_FOR - len(chosen))]
    members = sorted({u for c in chosen for u in c["members"]})
    vn = paths.stage("virtual_nodes")
    edges = []
    node_info: dict[str, dict[str, Any]] = {}
    if members:
        edges = (
            ds.dataset(str(vn / "edges"), format="parquet")
            .to_table(filter=ds.field("user_id").isin(members))
            .to_pylist()
        )
        wanted = sorted({e["node_id"] for e in edges})
        node_info = {
            n["node_id"]: n
            for n in ds.dataset(str(vn / "nodes"), format="parquet")
            .to_table(filter=ds.field("node_id").isin(wanted))
            .to_pylist()
        }
    meta: dict[str, Any] = {}
    with paths.output("frontend_campaigns", meta) as tmp:
        write_json(tmp / "campaigns.json", campaign_list(every))
        for c in chosen:
            mine = set(c["members"])
            write_json(
                tmp / "campaign_graphs" / f"{c['campaign_id']}.json",
                campaign_graph(c, [e for e in edges if e["user_id"] in mine], node_info),
            )
        meta.update(campaigns=len(every), graphs=len(chosen))
    return meta


def frontend_data(day: ClientDay) -> dict[str, Any]:
    """frontend_data/: hourly timeline and score distribution."""
    from fraudcore.frontend import hourly_timeline, score_distribution

    paths = day.paths
    organized = read_json(paths.stage("organized") / "stats.json")
    joined = read_json(paths.stage("event_join") / "stats.json")
    scores = [int(r["risk_score"]) for r in risk_rows(paths)]
    meta: dict[str, Any] = {}
    with paths.output("frontend_data", meta) as tmp:
        write_json(
            tmp / "timeline.json",
            hourly_timeline(organized["per_hour"], joined["per_hour"], day.client.timezone),
        )
        write_json(tmp / "score_distribution.json", score_distribution(scores, day.client.flag_threshold))
        meta.update(users=len(scores))
    return meta


def day_state(day: ClientDay) -> dict[str, Any]:
    """Whether the fetched day is final and complete: final, closes_at, final_reason, partial, input_snapshot.

    Decided by the input snapshot alone (its ready marker and @closed entry, the connector's
    whole-file quarantines), so the same snapshot always gives the same answer.
    """
    paths = day.paths
    raw = done_meta(paths.stage("raw"))
    keys = [f.key for f in snapshot.from_doc(raw.get("snapshot"))]
    state = snapshot.closure(day.client, day.date, keys).as_dict()
    connector = paths.stage("connector") / "stats.json"
    stats = read_json(connector) if connector.is_file() else {}
    state.update(partial=bool(stats.get("partial", False)), input_snapshot=raw.get("input"))
    return state


def frontend_report(day: ClientDay, run: RunInfo) -> dict[str, Any]:
    """frontend_report/: summary.json (with stage times so far and the day's state) and the HTML report."""
    from fraudcore.report import render_report
    from fraudcore.results import stage_seconds

    paths = day.paths
    summary = dict(read_json(paths.stage("result_agg") / "summary.json"))
    summary.update(
        stage_seconds=stage_seconds(dict(run.task_seconds)),
        run_id=run.run_id,
        code_version=run.code_version,
        **day_state(day),
    )
    fc = paths.stage("frontend_campaigns")
    listed = read_json(fc / "campaigns.json")
    top = next((c for c in listed["campaigns"] if c.get("is_fraud_ring")), None)
    graph = read_json(fc / "campaign_graphs" / f"{top['campaign_id']}.json") if top else None
    fd = paths.stage("frontend_data")
    html = render_report(
        summary,
        listed,
        read_json(fd / "timeline.json"),
        read_json(fd / "score_distribution.json"),
        graph,
        labeling_doc(paths),
    )
    meta: dict[str, Any] = {}
    with paths.output("frontend_report", meta) as tmp:
        write_json(tmp / "summary.json", summary)
        (tmp / "report.html").write_text(html, encoding="utf-8")
        meta.update(report_bytes=len(html.encode("utf-8")))
    return meta


def input_files(paths: WorkPaths) -> list[dict[str, Any]]:
    """reports/input_files.json: every file of the day's prefix and what happened to it.

    One entry per file, as the connector counted it: status (read, quarantined as a whole,
    not_recognised, expected for labels and markers), reason, physical records read, accepted,
    quarantined by reason. The warehouse's own raw/_DONE marker is not a client file.
    """
    stats = read_json(paths.stage("connector") / "stats.json")
    listed = stats.get("files")
    files = listed if isinstance(listed, list) else []
    return [f for f in files if not (f.get("source_file") == DONE and f.get("status") == "expected")]


def assemble_results(day: ClientDay) -> dict[str, Any]:
    """results_staging/: the results folder of DESIGN.md, except manifest and _SUCCESS."""
    from fraudcore.results import write_risk_scores_csv_gz

    paths = day.paths
    meta: dict[str, Any] = {}
    with paths.output("results_staging", meta) as tmp:
        rows = write_risk_scores_csv_gz(risk_rows(paths), tmp / "risk_scores" / "risk_scores.csv.gz")
        (tmp / "reports").mkdir()
        for name in ("summary.json", "report.html"):
            shutil.copy2(paths.stage("frontend_report") / name, tmp / "reports" / name)
        write_json(tmp / "reports" / "input_files.json", input_files(paths))
        shutil.copytree(
            paths.stage("frontend_campaigns"), tmp / "frontend_data", ignore=shutil.ignore_patterns("_DONE")
        )
        for f in sorted(paths.stage("frontend_data").glob("*.json")):
            shutil.copy2(f, tmp / "frontend_data" / f.name)
        # Names this staging: the sent manifest records it, so staged results made again are sent again.
        meta.update(risk_rows=rows, staged_id=uuid.uuid4().hex)
    return meta
