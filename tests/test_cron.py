"""Cron layer: client selectors, the lock that skips overlapping runs, argument errors."""
from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fraudbatch.cli import select_clients
from fraudcore.clients import ConfigError

ROOT = Path(__file__).resolve().parent.parent
ALL = ["appsflyer", "demo", "nasa", "sofi", "syncbank", "uopx"]


@pytest.mark.parametrize(("selectors", "expected"), [
    ([], ALL),
    (["+syncbank"], ["syncbank"]),
    (["+nasa", "+sofi"], ["nasa", "sofi"]),
    (["-syncbank", "-appsflyer", "-sofi", "-nasa"], ["demo", "uopx"]),
])
def test_selectors_choose_clients_like_the_crontab(selectors, expected) -> None:
    assert select_clients(selectors) == expected


@pytest.mark.parametrize("bad", [["+nobody"], ["syncbank"], ["-"]])
def test_bad_selector_is_refused(bad) -> None:
    with pytest.raises(ConfigError, match="bad client selector"):
        select_clients(bad)




def _wrapper_env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "FRAUDBATCH_VAR": str(tmp_path), "FRAUDBATCH_VENV": str(Path(sys.executable).parent.parent)}


def test_overlapping_run_is_skipped_with_its_own_code(tmp_path: Path) -> None:
    (tmp_path / "lock").mkdir()
    with open(tmp_path / "lock" / "hourly.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        run = subprocess.run(["bash", str(ROOT / "scripts" / "batch_pipeline_hourly_run.sh"), "+demo"],
                             env=_wrapper_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert run.returncode == 50
    assert "skipped: the previous hourly run still holds" in run.stderr


def test_wrapper_with_a_bad_selector_fails_before_running_anything(tmp_path: Path) -> None:
    run = subprocess.run(["bash", str(ROOT / "scripts" / "cronjob_20minute.sh"), "+nobody"],
                         env=_wrapper_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert "bad client selector" in run.stderr
    assert "luigi " not in run.stderr


def test_fraudbatch_check_rejects_unknown_client_in_one_line() -> None:
    run = subprocess.run([str(Path(sys.executable).parent / "fraudbatch"), "check", "--client", "nobody",
                          "--date", "2025-11-21"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert run.stderr.strip().count("\n") == 0 and "unknown client 'nobody'" in run.stderr
