"""The operations page (GET /ops) of the running service: over plain HTTP and in headless Chromium.

Jobs run in the python launcher mode from a temporary project; the browser test needs Debian's
chromium and chromium-driver (scripts/ensure-chromium.sh installs them).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
import requests

from dcluster import web
from dcluster.models import Job
from dcluster_client import DClusterClient, JobSpec, JobStatus
from tests.support.dcluster import JOB_MODULES, REPO, Service, fast_settings, make_project, terminal, wait_for

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
ARTIFACT = REPO / "var" / "test-artifacts" / "ops-page.png"
EVIL_ARG = "<script>alert('arg')</script>"
EVIL_MSG = "<script>alert('msg')</script>"

OPS_JOBS = {
    # Exits with the code in argv[0] after an error line the service turns into the job's message.
    "fail.py": """
        def main(argv):
            print("ERROR: " + " ".join(argv[1:]), flush=True)
            return int(argv[0])
    """
}


class JobRows(HTMLParser):
    """Job id and state of every row of the page's job table (rows with class "job")."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, str] = {}
        self.hanging: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        if tag == "tr" and "job" in classes:
            self.rows[a["data-job-id"] or ""] = a["data-state"] or ""
            if "hanging" in classes:
                self.hanging.add(a["data-job-id"] or "")


def rows(html_text: str) -> JobRows:
    parser = JobRows()
    parser.feed(html_text)
    return parser


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """One service for the module, with jobs that completed, failed (two exit codes) and one still running."""
    tmp = tmp_path_factory.mktemp("ops")
    root = make_project(tmp / "project", {**JOB_MODULES, **OPS_JOBS})
    settings = fast_settings(tmp / "state", root, max_concurrent_jobs=4)
    svc = Service(settings).start()
    yield svc
    svc.stop()


@pytest.fixture(scope="module")
def jobs(service: Service) -> dict[str, JobStatus]:
    """The module's jobs by name, each in the state its name says."""
    c = service.client
    submitted = {
        "sync_ok": c.submit(JobSpec(client="syncbank", app="ok", args=["--tag", EVIL_ARG])),
        "sync_fail3": c.submit(JobSpec(client="syncbank", app="fail", args=["3", EVIL_MSG])),
        "acme_fail7": c.submit(JobSpec(client="acme", app="fail", args=["7", "bad input"])),
        "acme_ok": c.submit(JobSpec(client="acme", app="ok")),
        "acme_running": c.submit(JobSpec(client="acme", app="sleepy", args=["--seconds", "60"])),
    }
    out = {name: wait_for(c, s.job_id, terminal) for name, s in submitted.items() if name != "acme_running"}
    out["acme_running"] = wait_for(c, submitted["acme_running"].job_id, lambda s: s.state == "RUNNING")
    assert {n: s.state for n, s in out.items()} == {
        "sync_ok": "COMPLETED",
        "sync_fail3": "FAILED",
        "acme_fail7": "FAILED",
        "acme_ok": "COMPLETED",
        "acme_running": "RUNNING",
    }
    return out


def page(service: Service, **params: str) -> requests.Response:
    return requests.get(service.url + "/ops", params=params, timeout=10)


def ids(jobs: dict[str, JobStatus], *names: str) -> set[str]:
    return {jobs[n].job_id for n in names}


# --- plain HTTP ----------------------------------------------------------------------------------


def test_page_lists_every_job_with_state_exit_code_and_a_terminate_button_only_when_running(
    service: Service, jobs: dict[str, JobStatus]
):
    r = page(service)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in r.headers["content-security-policy"]
    found = rows(r.text)
    assert found.rows == {s.job_id: s.state for s in jobs.values()}
    assert found.hanging == set()
    running = jobs["acme_running"]
    assert r.text.count('class="terminate"') == 1
    assert (
        f'data-job-id="{running.job_id}" data-namespace="s-test-acme-{running.job_id}">Terminate</button>'
        in r.text
    )
    assert (
        '<section id="hanging"><h2>Hanging jobs</h2><p class="muted">No hanging jobs.</p></section>' in r.text
    )
    # Nothing is loaded from elsewhere: no external src or href, one inline script (the page's own).
    assert "http://" not in r.text and "https://" not in r.text and "src=" not in r.text
    assert r.text.count("<script") == 1


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"client": "syncbank"}, ("sync_ok", "sync_fail3")),
        ({"client": "acme"}, ("acme_fail7", "acme_ok", "acme_running")),
        ({"app": "fail"}, ("sync_fail3", "acme_fail7")),
        ({"module": "ok"}, ("sync_ok", "acme_ok")),
        ({"state": "failed"}, ("sync_fail3", "acme_fail7")),
        ({"state": "RUNNING"}, ("acme_running",)),
        ({"state": "TERMINATED"}, ()),
        ({"exit_code": "3"}, ("sync_fail3",)),
        ({"exit_code": "0"}, ("sync_ok", "acme_ok")),
        ({"client": "acme", "app": "fail", "state": "FAILED", "exit_code": "7"}, ("acme_fail7",)),
        ({"client": "syncbank", "exit_code": "7"}, ()),
        (
            {"client": "", "app": "", "state": "", "exit_code": ""},  # the form submitted with nothing chosen
            ("sync_ok", "sync_fail3", "acme_fail7", "acme_ok", "acme_running"),
        ),
    ],
)
def test_filters(
    service: Service, jobs: dict[str, JobStatus], params: dict[str, str], expected: tuple[str, ...]
):
    r = page(service, **params)
    assert r.status_code == 200
    assert set(rows(r.text).rows) == ids(jobs, *expected)
    assert f'<span id="job-count">{len(expected)}</span>' in r.text


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"state": "bogus"}, "state &#x27;BOGUS&#x27; must be one of PENDING, RUNNING"),
        ({"exit_code": "x<b>"}, "exit code &#x27;x&lt;b&gt;&#x27; must be a whole number"),
    ],
)
def test_an_invalid_filter_is_a_422_page_that_says_why(
    service: Service, jobs: dict[str, JobStatus], params: dict[str, str], problem: str
):
    r = page(service, **params)
    assert r.status_code == 422
    assert problem in r.text
    assert rows(r.text).rows == {}


def test_job_args_and_messages_are_escaped(service: Service, jobs: dict[str, JobStatus]):
    assert service.client.status(jobs["sync_fail3"].job_id).message == f"ERROR: {EVIL_MSG}"
    text = page(service).text
    assert "<script>alert(" not in text
    assert "--tag &lt;script&gt;alert(&#x27;arg&#x27;)&lt;/script&gt;" in text
    assert "ERROR: &lt;script&gt;alert(&#x27;msg&#x27;)&lt;/script&gt;" in text
    # An escaped filter value stays escaped in the form it is echoed into.
    assert '<option value="&lt;x&gt;" selected>&lt;x&gt;</option>' in page(service, client="<x>").text


def test_spot_share_and_savings_panel_matches_the_cost_ledger(service: Service, jobs: dict[str, JobStatus]):
    report = service.client.costs()
    days = report["days"]
    assert {d["client"] for d in days} == {"syncbank", "acme"}
    text = page(service).text
    panel = text[text.index('<section id="costs">') :]
    assert "savings = batch share × spot share × spot discount" in panel
    for d in days:
        f = d["formula"]
        assert (
            f'<tr><td>{d["client"]}</td><td>{d["date"]}</td><td class="num">{d["runs"]} '
            f"({d['spot_runs']} / {d['on_demand_runs']})</td>"
        ) in panel
        assert f"<b>{f['savings'] * 100:.1f} %</b>" in panel
        assert f"${d['cost']:.4f}" in panel
    only_acme = page(service, client="acme").text
    assert "<tr><td>acme</td>" in only_acme and "<tr><td>syncbank</td>" not in only_acme


def test_open_alerts_are_shown(service: Service, jobs: dict[str, JobStatus]):
    assert "No open alerts." in page(service).text
    # A cluster-wide fallback disables spot for a while and raises an alert (new jobs go on-demand).
    service.client.fallback(duration_s=600, reason="ops page <test>")
    alerts = service.client.alerts(open_only=True)
    text = page(service).text
    assert f'<section id="alerts"><h2>Open alerts ({len(alerts)})</h2>' in text
    assert "<b>spot_disabled</b>" in text and "ops page &lt;test&gt;" in text


def _job(**changes: object) -> Job:
    base = dict(
        job_id="abc",
        namespace="s-prod-acme-abc",
        client="acme",
        env="prod",
        engine="spark",
        app="dfe",
        args=[],
        priority="normal",
        strategy="balanced",
        idempotency_key=None,
        state="RUNNING",
        capacity_type="spot",
        attempts=1,
        submitted_at="2025-11-21T04:00:00.000000Z",
        started_at="2025-11-21T04:00:00.000000Z",
    )
    return Job(**{**base, **changes})  # type: ignore[arg-type]


def test_hanging_jobs_are_highlighted_and_listed():
    now = 1_000_000.0
    over = _job(job_id="over", runs=[{"started_ts": now - 300, "ended_at": None}])
    under = _job(job_id="under", runs=[{"started_ts": now - 10, "ended_at": None}])
    hanging = _job(
        job_id="hang",
        state="HANGING",
        message="running 400.0s, longer than 2.5 x average",
        runs=[{"started_ts": now - 400, "ended_at": None}],
    )
    earlier = _job(
        job_id="was",
        state="COMPLETED",
        exit_code=0,
        runs=[
            {"outcome": "HANGING", "ended_at": "x", "seconds": 9.0, "reason": "terminated as hanging"},
            {"outcome": "COMPLETED", "ended_at": "y", "seconds": 1.0},
        ],
    )
    text = web.render_ops_page(
        all_jobs=[over, under, hanging, earlier],
        filters=web.OpsFilters(),
        problems=[],
        cost_report={"days": [], "total": {}, "on_demand_price_per_hour": 0.5},
        alerts=[],
        hang_limit=lambda app: (100.0, "2.5 x average 40.0s of 3 completed runs"),
        now=now,
        nonce="n",
    )
    assert rows(text).hanging == {"over", "hang"}
    section = text[text.index('<section id="hanging">') : text.index('<section id="jobs">')]
    assert (
        'data-job-id="over"' in section and 'data-job-id="hang"' in section and 'data-job-id="was"' in section
    )
    assert 'data-job-id="under"' not in section
    assert "running 5 m 00 s, longer than 2.5 x average 40.0s of 3 completed runs" in section
    assert "earlier run stopped: terminated as hanging" in section
    assert section.count('class="terminate"') == 2  # the running one and the HANGING one


# --- headless Chromium ---------------------------------------------------------------------------


@pytest.fixture()
def browser(tmp_path: Path) -> Iterator[object]:
    """Headless Debian Chromium driven by chromedriver (fails, not skips, when they are missing)."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.fail(
            f"{' and '.join(missing)} not found: run scripts/ensure-chromium.sh (as root it installs "
            "Debian's chromium and chromium-driver)",
            pytrace=False,
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    # This host has no outside network: without these flags Chromium keeps dialling Google at start.
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--window-size=1500,1900",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=DriverService(executable_path=str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()


def test_terminate_from_the_page_asks_first_then_terminates_as_ops_page(
    service: Service, jobs: dict[str, JobStatus], browser, tmp_path: Path
):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    client: DClusterClient = service.client
    job = client.submit(JobSpec(client="syncbank", app="sleepy", args=["--seconds", "60"]))
    wait_for(client, job.job_id, lambda s: s.state == "RUNNING")
    browser.get(service.url + "/ops")
    assert browser.title == "DCluster operations"
    shot = tmp_path / "ops-page.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, ARTIFACT)

    button = f'button.terminate[data-job-id="{job.job_id}"]'
    wait = WebDriverWait(browser, 10)
    question = f"Terminate job {job.job_id} (s-test-syncbank-{job.job_id})?"

    browser.find_element(By.CSS_SELECTOR, button).click()
    dialog = wait.until(expected_conditions.alert_is_present())
    assert dialog.text == question
    dialog.dismiss()
    time.sleep(0.5)  # long enough for a request the page must not have sent
    assert client.status(job.job_id).state == "RUNNING"
    assert client.audit(action="job_terminate", target=job.job_id) == []
    assert browser.find_element(By.CSS_SELECTOR, button).is_enabled()

    browser.find_element(By.CSS_SELECTOR, button).click()
    dialog = wait.until(expected_conditions.alert_is_present())
    assert dialog.text == question
    dialog.accept()
    done = wait_for(client, job.job_id, terminal, timeout=15)
    assert done.state == "TERMINATED"
    entries = client.audit(action="job_terminate", target=job.job_id)
    assert [(e["actor"], e["detail"]["state_before"]) for e in entries] == [("ops-page", "RUNNING")]
    # The page reloads itself: the row now says TERMINATED and has no button.
    row = f'tr.job[data-job-id="{job.job_id}"]'
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, row).get_attribute("data-state") == "TERMINATED")
    assert browser.find_elements(By.CSS_SELECTOR, button) == []
    # The module's other running job was not touched.
    assert client.status(jobs["acme_running"].job_id).state == "RUNNING"
