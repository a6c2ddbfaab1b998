"""The operations page (GET /ops): jobs, hanging jobs, alerts, spot savings; plain HTML, no framework."""

from __future__ import annotations

import datetime as dt
import html
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from dcluster.models import HANGING, RUNNING, STATES, Job, parse_iso

MAX_ROWS = 500  # a page an operator can still scan; the JSON API has the rest
ACTOR = "ops-page"  # X-Actor of the page's terminate calls, so the audit log says where they came from
TERMINABLE = (RUNNING, HANGING)

HangLimit = Callable[[str], tuple[float, str]]


@dataclass(frozen=True)
class OpsFilters:
    """What the operator filters the job table by; None means any."""

    client: str | None = None
    app: str | None = None
    state: str | None = None
    exit_code: int | None = None

    def matches(self, job: Job) -> bool:
        """True if the job passes every filter."""
        return (
            (self.client is None or job.client == self.client)
            and (self.app is None or job.app == self.app)
            and (self.state is None or job.state == self.state)
            and (self.exit_code is None or job.exit_code == self.exit_code)
        )


def parse_filters(
    *, client: str | None, app: str | None, state: str | None, exit_code: str | None
) -> tuple[OpsFilters, list[str]]:
    """Filters from the page's query parameters (an empty form field means any), and the problems."""
    problems: list[str] = []

    def blank(value: str | None) -> str | None:
        value = (value or "").strip()
        return value or None

    state_v = blank(state)
    if state_v is not None:
        state_v = state_v.upper()
        if state_v not in STATES:
            problems.append(f"state {state_v!r} must be one of {', '.join(STATES)}")
    code: int | None = None
    code_v = blank(exit_code)
    if code_v is not None:
        try:
            code = int(code_v)
        except ValueError:
            problems.append(f"exit code {code_v!r} must be a whole number")
    return OpsFilters(client=blank(client), app=blank(app), state=state_v, exit_code=code), problems


def _e(value: object) -> str:
    """Text escaped for HTML content and attribute values."""
    return html.escape("" if value is None else str(value), quote=True)


def _fmt_seconds(seconds: float | None) -> str:
    """A duration an operator reads at a glance: 4.2 s, 3 m 05 s, 2 h 07 m."""
    if seconds is None:
        return ""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} m {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} m"


def _pct(share: object) -> str:
    return f"{float(share or 0.0) * 100:.1f} %"  # type: ignore[arg-type]


def _ts(value: str | None) -> str:
    """An ISO timestamp shortened to seconds (the JSON API keeps the microseconds)."""
    return (value or "")[:19].replace("T", " ")


def run_elapsed(job: Job, now: float) -> float | None:
    """Seconds of the job's latest run: so far while it runs, else as recorded."""
    if not job.runs:
        return None
    run = job.runs[-1]
    if run.get("ended_at"):
        return float(run.get("seconds") or 0.0)
    started = run.get("started_ts")
    if started is None and job.started_at:
        started = parse_iso(job.started_at).timestamp()
    return None if started is None else now - float(started)


def hanging_reason(job: Job, now: float, hang_limit: HangLimit) -> str | None:
    """Why the job counts as hanging now (HANGING, or running past its limit); None if it does not."""
    if job.state == HANGING:
        return job.message or "HANGING"
    if job.state == RUNNING:
        elapsed = run_elapsed(job, now)
        limit, how = hang_limit(job.app)
        if elapsed is not None and elapsed > limit:
            return f"running {_fmt_seconds(elapsed)}, longer than {how}"
    return None


def hung_before(job: Job) -> list[str]:
    """Reasons of the job's earlier runs that were stopped as hanging (rescheduled or terminated)."""
    return [str(r.get("reason") or "hanging") for r in job.runs if r.get("outcome") == HANGING]


CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1d2733;background:#f4f6f8}
header{background:#1d2733;color:#fff;padding:12px 24px;display:flex;gap:24px;align-items:baseline}
header h1{font-size:18px;margin:0}header a{color:#9cc3ff}
main{padding:16px 24px}section{background:#fff;border:1px solid #d8dee4;border-radius:6px;
padding:12px 16px;margin-bottom:16px}h2{font-size:15px;margin:0 0 8px}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eaeef2;
vertical-align:top}th{background:#f6f8fa;font-weight:600;white-space:nowrap}td.num{text-align:right;
font-variant-numeric:tabular-nums;white-space:nowrap}td.msg{max-width:420px;overflow-wrap:anywhere;color:#57606a}
code{font-size:12px}.state{font-weight:600;padding:1px 6px;border-radius:10px;font-size:12px}
.st-COMPLETED{background:#dafbe1;color:#116329}.st-FAILED{background:#ffebe9;color:#a40e26}
.st-RUNNING{background:#ddf4ff;color:#0969da}.st-PENDING{background:#eaeef2;color:#57606a}
.st-TERMINATED{background:#fff1e5;color:#953800}.st-HANGING{background:#ffd8b5;color:#762c00}
tr.hanging td{background:#fff4d6}tr.hanging td:first-child{border-left:4px solid #d4a72c}
.counts{display:flex;gap:12px;flex-wrap:wrap}.count{border:1px solid #d8dee4;border-radius:6px;padding:6px 12px;
background:#fff}.count b{font-size:18px;display:block}form.filters{display:flex;gap:12px;flex-wrap:wrap;
align-items:end}form.filters label{display:flex;flex-direction:column;font-size:12px;color:#57606a}
.problem{background:#ffebe9;border:1px solid #ff8182;padding:8px 12px;border-radius:6px;margin-bottom:16px}
.alert{border-left:4px solid #cf222e;padding:4px 8px;margin:4px 0;background:#fff8f8}
button.terminate{background:#cf222e;color:#fff;border:0;border-radius:4px;padding:3px 10px;cursor:pointer}
button.terminate:disabled{background:#8c959f}.muted{color:#57606a}
"""

# Reads the job from data attributes (escaped by the page), never from code built out of strings.
JS = """
document.querySelectorAll("button.terminate").forEach(function (button) {
  button.addEventListener("click", async function () {
    var id = button.dataset.jobId, ns = button.dataset.namespace;
    if (!window.confirm("Terminate job " + id + " (" + ns + ")?")) { return; }
    button.disabled = true;
    try {
      var r = await fetch("cluster/job/terminate/" + encodeURIComponent(id),
                          {method: "POST", headers: {"X-Actor": ACTOR}});
      if (!r.ok) {
        var body = await r.json().catch(function () { return {}; });
        window.alert("Terminate " + id + " failed: " + (body.error || r.status));
      }
    } catch (err) {
      window.alert("Terminate " + id + " failed: " + err);
    }
    window.location.reload();
  });
});
"""


def _options(values: Iterable[str], selected: str | None, any_label: str) -> str:
    out = [f'<option value="">{_e(any_label)}</option>']
    for v in values:
        sel = " selected" if v == selected else ""
        out.append(f'<option value="{_e(v)}"{sel}>{_e(v)}</option>')
    return "".join(out)


def _filter_form(all_jobs: list[Job], f: OpsFilters) -> str:
    clients = sorted({j.client for j in all_jobs} | ({f.client} if f.client else set()))
    apps = sorted({j.app for j in all_jobs} | ({f.app} if f.app else set()))
    code = "" if f.exit_code is None else str(f.exit_code)
    return (
        '<section><h2>Filter</h2><form class="filters" method="get" action="">'
        f'<label>client<select name="client">{_options(clients, f.client, "any client")}</select></label>'
        f'<label>module (app)<select name="app">{_options(apps, f.app, "any module")}</select></label>'
        f'<label>state<select name="state">{_options(STATES, f.state, "any state")}</select></label>'
        f'<label>exit code<input name="exit_code" size="6" inputmode="numeric" value="{_e(code)}"></label>'
        '<button type="submit">Apply</button> <a href="?">clear</a></form></section>'
    )


def _counts(all_jobs: list[Job]) -> str:
    counts = dict.fromkeys(STATES, 0)
    for j in all_jobs:
        counts[j.state] += 1
    boxes = "".join(
        f'<div class="count"><b>{n}</b><span class="state st-{_e(s)}">{_e(s)}</span></div>'
        for s, n in counts.items()
    )
    return f'<section><h2>Jobs by state</h2><div class="counts">{boxes}</div></section>'


def _alerts(alerts: list[Mapping[str, Any]]) -> str:
    if not alerts:
        return '<section id="alerts"><h2>Open alerts</h2><p class="muted">No open alerts.</p></section>'
    items = "".join(
        f'<div class="alert"><b>{_e(a.get("kind"))}</b> since {_e(_ts(a.get("raised_at")))} '
        f"(×{_e(a.get('count'))}): {_e(a.get('message'))}</div>"
        for a in alerts
    )
    return f'<section id="alerts"><h2>Open alerts ({len(alerts)})</h2>{items}</section>'


def _terminate_button(job: Job) -> str:
    if job.state not in TERMINABLE:
        return ""
    return (
        f'<button type="button" class="terminate" data-job-id="{_e(job.job_id)}" '
        f'data-namespace="{_e(job.namespace)}">Terminate</button>'
    )


def _hanging(all_jobs: list[Job], now: float, hang_limit: HangLimit) -> str:
    rows = []
    for j in all_jobs:
        why = hanging_reason(j, now, hang_limit)
        earlier = hung_before(j)
        if why is None and not earlier:
            continue
        now_text = f"<b>now:</b> {_e(why)}" if why else ""
        before = "".join(f"<div>earlier run stopped: {_e(r)}</div>" for r in earlier)
        rows.append(
            f'<tr class="{"hanging" if why else ""}" data-job-id="{_e(j.job_id)}">'
            f'<td><a href="cluster/job/{_e(j.job_id)}"><code>{_e(j.job_id)}</code></a></td>'
            f"<td>{_e(j.client)}</td><td>{_e(j.app)}</td>"
            f'<td><span class="state st-{_e(j.state)}">{_e(j.state)}</span></td>'
            f'<td class="num">{_e(_fmt_seconds(run_elapsed(j, now)))}</td>'
            f'<td class="msg">{now_text}{before}</td><td>{_terminate_button(j)}</td></tr>'
        )
    if not rows:
        body = '<p class="muted">No hanging jobs.</p>'
    else:
        body = (
            "<table><thead><tr><th>job</th><th>client</th><th>module</th><th>state</th><th>duration</th>"
            f"<th>why</th><th></th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
        )
    return f'<section id="hanging"><h2>Hanging jobs</h2>{body}</section>'


def _jobs_table(jobs: list[Job], total: int, now: float, hang_limit: HangLimit) -> str:
    rows = []
    for j in jobs[:MAX_ROWS]:
        hanging = hanging_reason(j, now, hang_limit) is not None
        code = "" if j.exit_code is None else str(j.exit_code)
        rows.append(
            f'<tr class="job{" hanging" if hanging else ""}" data-job-id="{_e(j.job_id)}" '
            f'data-state="{_e(j.state)}">'
            f'<td><a href="cluster/job/{_e(j.job_id)}"><code>{_e(j.job_id)}</code></a>'
            f'<div class="muted"><code>{_e(j.namespace)}</code></div></td>'
            f'<td>{_e(j.client)}</td><td>{_e(j.app)}<div class="muted">{_e(" ".join(j.args))}</div></td>'
            f'<td><span class="state st-{_e(j.state)}">{_e(j.state)}</span></td>'
            f'<td class="num exit-code">{_e(code)}</td>'
            f'<td class="num">{_e(_fmt_seconds(run_elapsed(j, now)))}</td>'
            f'<td>{_e(j.capacity_type)}<div class="muted">{_e(j.task_class)}</div></td>'
            f'<td class="num">{_e(j.attempts)}</td><td class="num">{_e(_ts(j.submitted_at))}</td>'
            f'<td class="msg">{_e(j.message)}</td>'
            f'<td><a href="cluster/job/{_e(j.job_id)}/log">log</a> {_terminate_button(j)}</td></tr>'
        )
    shown = f"{min(total, MAX_ROWS)} of {total}" if total > MAX_ROWS else str(total)
    head = (
        "<tr><th>job / namespace</th><th>client</th><th>module / args</th><th>state</th><th>exit</th>"
        "<th>duration</th><th>capacity / class</th><th>attempts</th><th>submitted (UTC)</th>"
        "<th>message</th><th></th></tr>"
    )
    body = "".join(rows) or '<tr><td colspan="11" class="muted">No jobs match.</td></tr>'
    return (
        f'<section id="jobs"><h2>Jobs (<span id="job-count">{shown}</span>)</h2>'
        f"<table><thead>{head}</thead><tbody>{body}</tbody></table></section>"
    )


def _costs(report: Mapping[str, Any]) -> str:
    days = list(report.get("days") or [])
    head = (
        "<tr><th>client</th><th>day</th><th>runs (spot / on-demand)</th><th>run time</th><th>spot time</th>"
        "<th>batch share</th><th>spot share</th><th>spot discount</th><th>formula savings</th>"
        "<th>cost</th><th>all on-demand</th><th>saved</th></tr>"
    )

    def row(label: str, day: str, d: Mapping[str, Any], runs: str) -> str:
        f = d["formula"]
        return (
            f'<tr><td>{_e(label)}</td><td>{_e(day)}</td><td class="num">{_e(runs)}</td>'
            f'<td class="num">{_e(_fmt_seconds(d["seconds"]))}</td>'
            f'<td class="num">{_e(_fmt_seconds(d["spot_seconds"]))}</td>'
            f'<td class="num">{_e(_pct(f["batch_share"]))}</td><td class="num">{_e(_pct(f["spot_share"]))}</td>'
            f'<td class="num">{_e(_pct(f["spot_discount"]))}</td>'
            f'<td class="num"><b>{_e(_pct(f["savings"]))}</b></td>'
            f'<td class="num">${d["cost"]:.4f}</td><td class="num">${d["on_demand_cost"]:.4f}</td>'
            f'<td class="num">${d["savings"]:.4f} ({_e(_pct(d["savings_share"]))})</td></tr>'
        )

    rows = [
        row(d["client"], d["date"], d, f"{d['runs']} ({d['spot_runs']} / {d['on_demand_runs']})")
        for d in days
    ]
    if days:
        rows.append(row("all", "", report["total"], str(sum(d["runs"] for d in days))))
    body = "".join(rows) or '<tr><td colspan="12" class="muted">No finished runs yet.</td></tr>'
    return (
        f'<section id="costs"><h2>Spot share and savings</h2>'
        f'<p class="muted">savings = batch share × spot share × spot discount (SPEC §3); batch share = run '
        f"time that is not critical, spot share = share of that on spot, spot discount = 1 − spot cost / "
        f"on-demand cost of the same time; on-demand at ${float(report.get('on_demand_price_per_hour') or 0):.4f}/h."
        f"</p><table><thead>{head}</thead><tbody>{body}</tbody></table></section>"
    )


def render_ops_page(
    *,
    all_jobs: list[Job],
    filters: OpsFilters,
    problems: list[str],
    cost_report: Mapping[str, Any],
    alerts: list[Mapping[str, Any]],
    hang_limit: HangLimit,
    now: float,
    nonce: str,
    version: str = "",
) -> str:
    """The whole operations page as one HTML document (styles and script inline, nonce-tagged)."""
    shown = [] if problems else [j for j in all_jobs if filters.matches(j)]
    problem_html = "".join(f'<div class="problem">{_e(p)}</div>' for p in problems)
    generated = dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    script = JS.replace("ACTOR", _js_string(ACTOR))
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>DCluster operations</title><style nonce="{_e(nonce)}">{CSS}</style></head><body>'
        f"<header><h1>DCluster operations</h1><span>generated {_e(generated)}</span>"
        f'<span>{_e(version)}</span><a href="ops">reload</a><a href="cluster/health">health</a>'
        '<a href="docs">API</a></header><main>'
        f"{problem_html}{_counts(all_jobs)}{_filter_form(all_jobs, filters)}{_alerts(alerts)}"
        f"{_hanging(all_jobs, now, hang_limit)}{_jobs_table(shown, len(shown), now, hang_limit)}"
        f'{_costs(cost_report)}</main><script nonce="{_e(nonce)}">{script}</script></body></html>'
    )


def _js_string(value: str) -> str:
    """A JS string literal that cannot close the script element."""
    return json.dumps(value).replace("<", "\\u003c")


def content_security_policy(nonce: str) -> str:
    """Only this page's own nonce-tagged style and script, and calls back to this service."""
    return (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; connect-src 'self'; "
        "img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )
