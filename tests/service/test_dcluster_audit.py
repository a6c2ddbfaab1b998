"""The audit log keeps SPEC §8's retention: old entries go when the log opens and once a day after."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import replace
from pathlib import Path

import pytest

from dcluster.settings import DClusterSettings, load_config_file
from fraudcore import audit as audit_module
from fraudcore.audit import AuditLog
from tests.support import REPO

NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)


def _entry(at: dt.datetime, action: str) -> str:
    stamp = at.isoformat(timespec="microseconds").replace("+00:00", "Z")
    return json.dumps({"at": stamp, "action": action, "actor": "ops", "target": "j1", "detail": {}}) + "\n"


def _write(path: Path, *lines: str) -> None:
    path.write_text("".join(lines), encoding="utf-8")


def test_entries_older_than_the_retention_go_when_the_log_opens(tmp_path: Path):
    path = tmp_path / "audit.jsonl"
    _write(
        path,
        _entry(NOW - dt.timedelta(days=400), "job_submit"),
        "{cut by a crash\n",
        _entry(NOW - dt.timedelta(days=366), "job_terminate"),
        _entry(NOW - dt.timedelta(days=364), "job_submit"),
        _entry(NOW - dt.timedelta(hours=1), "spot_cancel"),
    )
    log = AuditLog(path, retention_days=365, clock=NOW.timestamp)
    assert [e["action"] for e in log.read()] == ["spot_cancel", "job_submit"]  # newest first
    assert "{cut by a crash\n" in path.read_text()  # unreadable lines stay for a person to look at
    assert not path.with_suffix(".jsonl.tmp").exists()


def test_zero_retention_keeps_everything(tmp_path: Path):
    path = tmp_path / "audit.jsonl"
    _write(path, _entry(NOW - dt.timedelta(days=4000), "job_submit"))
    assert len(AuditLog(path, retention_days=0, clock=NOW.timestamp).read()) == 1


def test_a_long_running_service_prunes_once_a_day_on_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = tmp_path / "audit.jsonl"
    now = [NOW.timestamp()]
    log = AuditLog(path, retention_days=1, clock=lambda: now[0])
    _write(path, _entry(NOW - dt.timedelta(days=2), "job_submit"))
    log.record("job_terminate", "ops", "j1")  # within a day of opening: no prune yet
    assert len(log.read()) == 2
    now[0] += audit_module.PRUNE_EVERY_S
    log.record("job_terminate", "ops", "j2")
    assert [e["target"] for e in log.read()] == ["j2", "j1"]


def test_retention_is_a_service_setting(tmp_path: Path):
    service, _ = load_config_file(REPO / "config" / "dcluster-config.yaml")
    assert service["audit_retention_days"] == 365
    s = DClusterSettings.from_env({"DCLUSTER_AUDIT_RETENTION_DAYS": "30"}, project_root=REPO)
    assert s.audit_retention_days == 30.0


# --- config_change -------------------------------------------------------------------------------


def test_config_change_names_each_changed_key_and_is_quiet_when_nothing_changed(tmp_path: Path):
    log = AuditLog(tmp_path / "audit.jsonl", clock=NOW.timestamp)
    applied = tmp_path / "config.applied.json"
    first = {"service": {"max_concurrent_jobs": 2}, "spot": {"max_price": 0.5, "enabled": True}, "tags": ()}
    entry = audit_module.record_config_change(log, applied, first, source="config/x.yaml", actor="ops-bob")
    assert entry is not None
    assert (entry["action"], entry["actor"], entry["target"]) == ("config_change", "ops-bob", "config/x.yaml")
    assert entry["detail"] == {
        "source": "config/x.yaml",
        "first_start": True,
        "changed": {},
        "removed": [],
        "added": {"service.max_concurrent_jobs": 2, "spot.enabled": True, "spot.max_price": 0.5, "tags": []},
    }

    assert audit_module.record_config_change(log, applied, first, source="config/x.yaml") is None

    second = {"service": {"max_concurrent_jobs": 3}, "spot": {"max_price": 0.5}, "tags": ("a",), "new": None}
    entry = audit_module.record_config_change(log, applied, second, source="config/x.yaml")
    assert entry["detail"] == {
        "source": "config/x.yaml",
        "first_start": False,
        "changed": {"service.max_concurrent_jobs": {"from": 2, "to": 3}, "tags": {"from": [], "to": ["a"]}},
        "added": {"new": None},
        "removed": ["spot.enabled"],
    }
    assert entry["actor"] == audit_module.operator() and "@" in entry["actor"]
    assert [e["action"] for e in log.read(action="config_change")] == ["config_change", "config_change"]


def test_dcluster_records_a_config_change_when_it_starts_with_other_settings(tmp_path: Path, start_service):
    settings = DClusterSettings(state_dir=tmp_path / "state", spark_submit="/bin/true", poll_interval_s=0.1)
    start_service(settings).stop()
    again = start_service(settings)
    # A new port each start, but the same settings otherwise: only the port is reported.
    (latest, first) = again.client.audit(action="config_change")
    assert first["detail"]["first_start"] is True
    assert first["detail"]["added"]["max_concurrent_jobs"] == 2
    assert first["detail"]["added"]["cluster.spot.max_price"] == 0.5
    assert list(latest["detail"]["changed"]) == ["port"]
    again.stop()

    changed = start_service(replace(settings, max_concurrent_jobs=3))
    newest = changed.client.audit(action="config_change")[0]
    assert newest["detail"]["changed"]["max_concurrent_jobs"] == {"from": 2, "to": 3}
    assert newest["actor"] == audit_module.operator()
