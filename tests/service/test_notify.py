"""Client notification after ResultSender (SPEC §6), against a real HTTP receiver on loopback."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from fraudcore.clients import ClientConfig, ConfigError, load_registry
from fraudcore.notify import NotifyError, idempotency_key, results_ready, send, signature
from fraudcore.paths import WorkPaths
from pipeline.day import ClientDay
from pipeline.results import notify_client
from storage.objectstore import LocalObjectStore
from tests.support.receiver import Receiver

DAY = dt.date(2025, 11, 21)
MANIFEST = (
    json.dumps(
        {"client": "demo", "date": "2025-11-21", "run_id": "r1", "files": {"a.csv": {}, "b.json": {}}},
        indent=2,
    )
    + "\n"
).encode()
SUMMARY = {"users": 500, "flagged_users": 53, "campaigns": 12}


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


def _payload() -> dict:
    return results_ready("demo", DAY, "file:///b/results/demo/2025-11-21/", MANIFEST, SUMMARY)


def test_payload_names_the_results_and_their_manifest():
    assert _payload() == {
        "event": "results_ready",
        "client": "demo",
        "date": "2025-11-21",
        "results_url": "file:///b/results/demo/2025-11-21/",
        "manifest_sha256": hashlib.sha256(MANIFEST).hexdigest(),
        "files": 2,
        "run_id": "r1",
        "users": 500,
        "flagged_users": 53,
        "campaigns": 12,
    }
    assert idempotency_key(_payload()) == f"demo/2025-11-21/{hashlib.sha256(MANIFEST).hexdigest()[:32]}"


def test_signed_post_that_the_receiver_can_verify(receiver: Receiver):
    assert send(receiver.url, _payload(), secret="s3cret") == {"status": 200, "attempts": 1}
    ((headers, body),) = receiver.requests
    assert json.loads(body) == _payload()
    assert headers["Content-Type"] == "application/json"
    assert headers["Idempotency-Key"] == idempotency_key(_payload())
    expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert headers["X-Fraudbatch-Signature"] == expected == signature("s3cret", body)


def test_unsigned_without_a_secret(receiver: Receiver):
    send(receiver.url, _payload())
    assert "X-Fraudbatch-Signature" not in receiver.requests[0][0]


def test_busy_endpoint_is_retried_with_backoff(receiver: Receiver):
    receiver.statuses = [503, 429]
    waits: list[float] = []
    assert send(receiver.url, _payload(), sleep=waits.append, backoff_s=0.5) == {"status": 200, "attempts": 3}
    assert waits == [0.5, 1.0]
    assert len({h["Idempotency-Key"] for h, _ in receiver.requests}) == 1  # the same key every time


def test_refusal_is_not_retried_and_says_what_the_endpoint_answered(receiver: Receiver):
    receiver.statuses = [401]
    with pytest.raises(NotifyError) as err:
        send(receiver.url, _payload(), sleep=lambda s: None)
    assert str(err.value) == (
        f"client notification to {receiver.url} refused: HTTP 401: bad signature; check "
        "the endpoint and, if it verifies signatures, the shared secret"
    )
    assert len(receiver.requests) == 1


def test_unreachable_endpoint_fails_after_the_attempts():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/"  # bound, never listening: connection refused
        waits: list[float] = []
        with pytest.raises(
            NotifyError, match=r"failed after 3 attempts: ConnectionError: .*run ResultSender again"
        ):
            send(url, _payload(), sleep=waits.append, timeout_s=2)
    assert waits == [1.0, 2.0]


# --- the ResultSender step --------------------------------------------------------------------------


def _sent_day(tmp_path: Path) -> tuple[LocalObjectStore, WorkPaths]:
    store = LocalObjectStore(tmp_path / "objectstore")
    prefix = "results/demo/2025-11-21/"
    store.put_bytes("demo-bucket", prefix + "_manifest.json", MANIFEST)
    store.put_bytes("demo-bucket", prefix + "reports/summary.json", json.dumps(SUMMARY).encode())
    return store, WorkPaths(tmp_path / "warehouse", "demo", DAY)


def test_step_notifies_with_what_is_in_the_bucket_and_marks_it_done(tmp_path: Path, receiver: Receiver):
    store, paths = _sent_day(tmp_path)
    client = ClientConfig(
        name="demo", bucket="demo-bucket", notify_url=receiver.url, notify_secret_env="DEMO_HOOK"
    )
    meta = notify_client(ClientDay(client, paths, lambda: store), environ={"DEMO_HOOK": "k"})
    assert meta == {
        "notified": True,
        "status": 200,
        "attempts": 1,
        "manifest_sha256": hashlib.sha256(MANIFEST).hexdigest(),
    }
    body = json.loads(receiver.requests[0][1])
    assert body["results_url"] == store.url("demo-bucket", "results/demo/2025-11-21/")
    assert (body["users"], body["flagged_users"]) == (500, 53)
    assert json.loads((paths.stage("result_sender") / "notification.json").read_text()) == meta
    assert paths.done("result_sender").exists()


def test_step_without_a_url_only_marks_it_done(tmp_path: Path):
    store, paths = _sent_day(tmp_path)
    assert notify_client(
        ClientDay(ClientConfig(name="demo", bucket="demo-bucket"), paths, lambda: store)
    ) == {"notified": False}
    assert paths.done("result_sender").exists()


def test_a_named_secret_that_is_not_set_stops_before_sending(tmp_path: Path, receiver: Receiver):
    store, paths = _sent_day(tmp_path)
    client = ClientConfig(
        name="demo", bucket="demo-bucket", notify_url=receiver.url, notify_secret_env="DEMO_HOOK"
    )
    with pytest.raises(
        RuntimeError, match=r"^client demo signs notifications with \$DEMO_HOOK, which is not set"
    ):
        notify_client(ClientDay(client, paths, lambda: store), environ={})
    assert receiver.requests == [] and not paths.done("result_sender").exists()


def test_a_failed_notification_leaves_the_step_undone(tmp_path: Path, receiver: Receiver):
    store, paths = _sent_day(tmp_path)
    receiver.statuses = [400]
    client = ClientConfig(name="demo", bucket="demo-bucket", notify_url=receiver.url)
    with pytest.raises(NotifyError):
        notify_client(ClientDay(client, paths, lambda: store))
    assert not paths.done("result_sender").exists()  # the next ResultSender run notifies again
    assert notify_client(ClientDay(client, paths, lambda: store))["notified"] is True


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"notify_url": "ftp://x"}, r"notify_url must be an http\(s\) URL, got 'ftp://x'"),
        (
            {"notify_url": "https://hooks.example.com/f", "notify_secret_env": "lower"},
            "notify_secret_env must name an environment variable",
        ),
    ],
)
def test_registry_refuses_bad_notification_settings(tmp_path: Path, entry: dict, message: str):
    registry = tmp_path / "clients.yaml"
    registry.write_text(json.dumps({"clients": {"demo": {"bucket": "demo-bucket", **entry}}}))
    with pytest.raises(ConfigError, match=message):
        load_registry(registry)


def test_no_shipped_client_is_notified_by_default():
    assert {c.name: c.notify_url for c in load_registry().values() if c.notify_url} == {}
