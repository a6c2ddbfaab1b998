"""Cron layer: client selectors, the lock that skips overlapping runs, argument errors."""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fraudbatch.cli import main as fraudbatch_main
from fraudbatch.cli import select_clients
from fraudbatch.days import client_day
from fraudcore.clients import ClientConfig, ConfigError
from tests.support import REPO

ALL = ["appsflyer", "demo", "nasa", "sofi", "syncbank", "uopx"]


@pytest.mark.parametrize(
    ("selectors", "expected"),
    [
        ([], ALL),
        (["+syncbank"], ["syncbank"]),
        (["+nasa", "+sofi"], ["nasa", "sofi"]),
        (["-syncbank", "-appsflyer", "-sofi", "-nasa"], ["demo", "uopx"]),
    ],
)
def test_selectors_choose_clients_like_the_crontab(selectors, expected) -> None:
    assert select_clients(selectors) == expected


@pytest.mark.parametrize("bad", [["+nobody"], ["syncbank"], ["-"]])
def test_bad_selector_is_refused(bad) -> None:
    with pytest.raises(ConfigError, match="bad client selector"):
        select_clients(bad)


NEW_YORK = ClientConfig(name="syncbank", bucket="b", timezone="America/New_York")
UTC_CLIENT = ClientConfig(name="demo", bucket="b")
AT_2_UTC = dt.datetime(2025, 11, 22, 2, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("client", "which", "expected"),
    [
        (NEW_YORK, "today", dt.date(2025, 11, 21)),  # 21:00 the evening before in New York
        (NEW_YORK, "yesterday", dt.date(2025, 11, 20)),
        (NEW_YORK, "today-7", dt.date(2025, 11, 14)),
        (UTC_CLIENT, "today", dt.date(2025, 11, 22)),
        (UTC_CLIENT, "yesterday", dt.date(2025, 11, 21)),
        (ClientConfig(name="tokyo", bucket="b", timezone="Asia/Tokyo"), "today", dt.date(2025, 11, 22)),
    ],
)
def test_client_day_is_on_the_client_calendar(client, which, expected) -> None:
    assert client_day(client, which, AT_2_UTC) == expected


def test_client_day_refuses_bad_input() -> None:
    with pytest.raises(ConfigError, match="today, yesterday or today-N"):
        client_day(NEW_YORK, "tomorrow", AT_2_UTC)
    with pytest.raises(ValueError, match="aware"):
        client_day(NEW_YORK, "today", dt.datetime(2025, 11, 22, 2, 0))


def _registry(tmp_path: Path) -> Path:
    path = tmp_path / "clients.yaml"
    path.write_text(
        "clients:\n  demo:\n    bucket: demo-bucket\n"
        "  syncbank:\n    bucket: syncbank-data\n    timezone: America/New_York\n"
    )
    return path


def test_fraudbatch_day_prints_the_client_date(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("FRAUDBATCH_CLIENTS", str(_registry(tmp_path)))
    assert fraudbatch_main(["day", "--client", "syncbank", "--now", "2025-11-22T02:00:00Z", "today"]) == 0
    assert capsys.readouterr().out == "2025-11-21\n"
    assert fraudbatch_main(["day", "--client", "syncbank", "--now", "2025-11-22T02:00", "today"]) == 2
    assert "offset" in capsys.readouterr().err


def _fake_venv(tmp_path: Path) -> Path:
    """A venv whose fraudbatch is the real one and whose luigi only logs its arguments."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "fraudbatch").symlink_to(Path(sys.executable).parent / "fraudbatch")
    luigi = venv / "bin" / "luigi"
    luigi.write_text('#!/usr/bin/env bash\necho "$*" >> "$FAKE_LUIGI_LOG"\n')
    luigi.chmod(0o755)
    return venv


def _fake_luigi_env(tmp_path: Path, log: Path) -> dict[str, str]:
    """A wrapper's environment with the fake venv (luigi logs to `log`), two clients and a fixed clock."""
    return {
        **os.environ,
        "FRAUDBATCH_VAR": str(tmp_path / "var"),
        "FRAUDBATCH_VENV": str(_fake_venv(tmp_path)),
        "FRAUDBATCH_CLIENTS": str(_registry(tmp_path)),
        "FAKE_LUIGI_LOG": str(log),
        "FRAUDBATCH_NOW": "2025-11-22T02:00:00Z",
    }


def _wrapper(script: str, *selectors: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Runs scripts/<script> with bash, as cron does."""
    return subprocess.run(
        ["bash", str(REPO / "scripts" / script), *selectors],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("script", "env", "expected"),
    [
        ("cronjob_20minute.sh", {}, {"demo": "2025-11-22", "syncbank": "2025-11-21"}),
        ("batch_pipeline_hourly_run.sh", {}, {"demo": "2025-11-21", "syncbank": "2025-11-20"}),
        (
            "batch_pipeline_hourly_run.sh",
            {"DATE": "2025-11-01"},
            {"demo": "2025-11-01", "syncbank": "2025-11-01"},
        ),
    ],
)
def test_wrapper_passes_each_client_its_local_date(tmp_path: Path, script, env, expected) -> None:
    log = tmp_path / "luigi.log"
    run = _wrapper(script, env={**_fake_luigi_env(tmp_path, log), **env})
    assert run.returncode == 0, run.stderr
    calls = [line.split() for line in log.read_text().splitlines()]
    assert {c[c.index("--client") + 1]: c[c.index("--date") + 1] for c in calls} == expected
    assert len(calls) == len(expected)


def test_backfill_counts_days_on_each_client_calendar(tmp_path: Path) -> None:
    log = tmp_path / "luigi.log"
    run = _wrapper(
        "batch_pipeline_8hour_run.sh", "+syncbank", env={**_fake_luigi_env(tmp_path, log), "DAYS": "2"}
    )
    assert run.returncode == 0, run.stderr
    dates = [line.split()[line.split().index("--date") + 1] for line in log.read_text().splitlines()]
    assert dates == ["2025-11-19", "2025-11-20"]


def _wrapper_env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "FRAUDBATCH_VAR": str(tmp_path),
        "FRAUDBATCH_VENV": str(Path(sys.executable).parent.parent),
    }


def test_overlapping_run_is_skipped_with_its_own_code(tmp_path: Path) -> None:
    (tmp_path / "lock").mkdir()
    with open(tmp_path / "lock" / "hourly.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        run = _wrapper("batch_pipeline_hourly_run.sh", "+demo", env=_wrapper_env(tmp_path))
    assert run.returncode == 50
    assert "skipped: the previous hourly run still holds" in run.stderr


def test_wrapper_with_a_bad_selector_fails_before_running_anything(tmp_path: Path) -> None:
    run = _wrapper("cronjob_20minute.sh", "+nobody", env=_wrapper_env(tmp_path))
    assert run.returncode == 2
    assert "bad client selector" in run.stderr
    assert "luigi " not in run.stderr


def test_fraudbatch_check_rejects_unknown_client_in_one_line() -> None:
    run = subprocess.run(
        [
            str(Path(sys.executable).parent / "fraudbatch"),
            "check",
            "--client",
            "nobody",
            "--date",
            "2025-11-21",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
    assert run.stderr.strip().count("\n") == 0 and "unknown client 'nobody'" in run.stderr
