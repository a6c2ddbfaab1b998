"""The client registry: defaults, one-line errors naming file, client and key, and its JSON Schema."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from fraudcore.clients import (
    DEFAULT_REGISTRY,
    ClientConfig,
    ConfigError,
    get_client,
    load_registry,
    main,
    registry_schema,
    schema_text,
)

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "docs" / "clients.schema.json"


def registry(tmp_path: Path, doc: object) -> Path:
    path = tmp_path / "clients.yaml"
    path.write_text(yaml.safe_dump(doc) if not isinstance(doc, str) else doc, encoding="utf-8")
    return path


def error_of(tmp_path: Path, doc: object) -> str:
    path = registry(tmp_path, doc)
    with pytest.raises(ConfigError) as err:
        load_registry(path)
    message = str(err.value)
    assert "\n" not in message and "errors.pydantic.dev" not in message
    return message.removeprefix(f"{path}: ")


def test_defaults_are_unchanged() -> None:
    cfg = ClientConfig(name="demo", bucket="demo-bucket")
    assert dataclasses.asdict(cfg) == {
        "name": "demo",
        "bucket": "demo-bucket",
        "timezone": "UTC",
        "priority": "normal",
        "field_map": {},
        "super_node_threshold": 50,
        "flag_threshold": 70,
        "cron_group": "",
        "notify_url": "",
        "notify_secret_env": "",
        "event_types": {},
        "on_bad_file": "quarantine",
        "close_after": "2h",
        "ready_marker": "_READY",
    }
    assert load_registry(DEFAULT_REGISTRY)["demo"] == cfg
    assert dataclasses.replace(cfg, on_bad_file="fail").on_bad_file == "fail"


def test_the_committed_registry_loads_with_its_entries() -> None:
    syncbank = get_client("syncbank", DEFAULT_REGISTRY)
    assert (syncbank.timezone, syncbank.priority, syncbank.field_map["ts"]) == (
        "America/New_York",
        "critical",
        "event_time",
    )
    assert get_client("nasa", DEFAULT_REGISTRY).super_node_threshold == 40


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (
            {"clients": {"demo": {"bucket": "b", "timezon": "UTC"}}},
            "client 'demo': unknown keys ['timezon'] (did you mean 'timezone'?); known: bucket, close_after, ",
        ),
        (
            {"defaults": {"priorty": "batch"}, "clients": {"demo": {"bucket": "b"}}},
            "defaults: unknown keys ['priorty'] (did you mean 'priority'?); known: ",
        ),
        (
            {"client": {"demo": {"bucket": "b"}}},
            "unknown top-level keys ['client'] (did you mean 'clients'?); known: clients, defaults",
        ),
        (
            {"clients": {"demo": {"bucket": "b", "colour": "red"}}},
            "client 'demo': unknown keys ['colour']; known: ",
        ),
    ],
)
def test_unknown_and_misspelt_keys(tmp_path: Path, doc: object, message: str) -> None:
    assert error_of(tmp_path, doc).startswith(message)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"super_node_threshold": "50"}, "super_node_threshold: Input should be a valid integer, got '50'"),
        ({"flag_threshold": True}, "flag_threshold: Input should be a valid integer, got True"),
        ({"bucket": 2024}, "bucket: Input should be a valid string, got 2024"),
        ({"field_map": None}, "field_map: Input should be a valid dictionary, got None"),
        ({"event_types": ["login"]}, "event_types: Input should be a valid dictionary, got ['login']"),
        ({"cron_group": 5}, "cron_group: Input should be a valid string, got 5"),
    ],
)
def test_wrong_types_name_the_key(tmp_path: Path, entry: dict, message: str) -> None:
    doc = {"clients": {"demo": {"bucket": "b", **entry}}}
    assert error_of(tmp_path, doc) == f"client 'demo': {message}"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"timezone": "Mars/Base"}, "unknown timezone 'Mars/Base'"),
        ({"priority": "urgent"}, "priority: Input should be 'critical', 'normal' or 'batch', got 'urgent'"),
        ({"flag_threshold": 101}, "flag_threshold: Input should be less than or equal to 100, got 101"),
        (
            {"super_node_threshold": 0},
            "super_node_threshold: Input should be greater than or equal to 1, got 0",
        ),
        ({"bucket": ""}, "bucket: String should have at least 1 character, got ''"),
        ({"on_bad_file": "skip"}, "on_bad_file: Input should be 'quarantine' or 'fail', got 'skip'"),
        ({"close_after": "2 hours"}, "close_after: expected a duration such as 30m, 2h or 1d, got '2 hours'"),
        ({"ready_marker": "a/b"}, "ready_marker must be a file name (no '/'), got 'a/b'"),
        ({"notify_url": "ftp://x"}, "notify_url must be an http(s) URL, got 'ftp://x'"),
        ({"field_map": {"ts": "evt_time"}}, "field_map.ts: Input should be 'event_id', "),
        ({"event_types": {"Login": "signin"}}, "event_types.Login: Input should be 'login', "),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, entry: dict, message: str) -> None:
    doc = {"clients": {"demo": {"bucket": "b", **entry}}}
    assert error_of(tmp_path, doc).startswith(f"client 'demo': {message}")


def test_every_problem_of_an_entry_is_on_the_one_line(tmp_path: Path) -> None:
    doc = {"clients": {"demo": {"timezone": "UTC", "flag_threshold": "high"}}}
    assert error_of(tmp_path, doc) == (
        "client 'demo': bucket: required, not set; flag_threshold: Input should be a valid integer, got 'high'"
    )


def test_a_bad_default_says_where_it_came_from(tmp_path: Path) -> None:
    doc = {"defaults": {"timezone": "Mars/Base"}, "clients": {"demo": {"bucket": "b"}}}
    assert error_of(tmp_path, doc) == "client 'demo': unknown timezone 'Mars/Base' (from defaults)"


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"clients": {"Demo": {"bucket": "b"}}}, "client 'Demo': name must match ^[a-z][a-z0-9_-]{1,31}$"),
        (
            {"clients": {"demo": "demo-bucket"}},
            "client 'demo': expected a mapping of keys, got str 'demo-bucket'",
        ),
        ({"clients": ["demo"]}, "clients: expected a mapping of keys, got list ['demo']"),
        ("- demo\n", "expected a mapping with clients and defaults, got list ['demo']"),
    ],
)
def test_bad_shapes(tmp_path: Path, doc: object, message: str) -> None:
    assert error_of(tmp_path, doc) == message


def test_committed_schema_is_up_to_date() -> None:
    assert SCHEMA_FILE.read_text(encoding="utf-8") == schema_text(), (
        "docs/clients.schema.json is out of date: python -m fraudcore.clients --schema > docs/clients.schema.json"
    )


def test_schema_accepts_the_registry_and_refuses_a_misspelt_key() -> None:
    schema = registry_schema()
    doc = yaml.safe_load(DEFAULT_REGISTRY.read_text(encoding="utf-8"))
    jsonschema.validate(doc, schema)
    doc["clients"]["demo"]["timezon"] = "UTC"
    with pytest.raises(jsonschema.ValidationError, match="timezon"):
        jsonschema.validate(doc, schema)
    assert "name" not in schema["$defs"]["ClientEntry"]["properties"]
    assert (
        schema["$defs"]["ClientEntry"]["required"] == ["bucket"]
        and "required" not in schema["$defs"]["Defaults"]
    )


def test_command_prints_the_schema_and_checks_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--schema"]) == 0
    assert json.loads(capsys.readouterr().out) == registry_schema()
    bad = registry(tmp_path, {"clients": {"demo": {"bucket": "b", "priority": 1}}})
    assert main([str(bad)]) == 2
    assert capsys.readouterr().err == (
        f"error: {bad}: client 'demo': priority: Input should be 'critical', 'normal' or 'batch', got 1\n"
    )
    assert main([str(DEFAULT_REGISTRY)]) == 0
    names = sorted(load_registry(DEFAULT_REGISTRY))
    assert capsys.readouterr().out == f"{DEFAULT_REGISTRY}: {len(names)} clients: {', '.join(names)}\n"
