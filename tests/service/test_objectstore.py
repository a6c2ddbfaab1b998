"""One contract suite for every object store backend: a local folder, and S3 on a real moto server."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from storage.errors import ObjectNotFound, StorageConfigError, StorageError
from storage.objectstore import (
    LocalObjectStore,
    ObjectInfo,
    ObjectStore,
    ObjectStoreSettings,
    S3ObjectStore,
    make_object_store,
)
from storage.transfer import download_prefix, upload_dir


@pytest.fixture(scope="module")
def s3_client(moto_endpoint):
    """A plain boto3 client on the moto server, for setting up buckets and checking object headers."""
    import boto3

    return boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")


def _new_bucket(s3_client) -> str:
    name = f"bucket-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=name)
    return name


@pytest.fixture(params=["local", "s3"])
def store_and_bucket(request, tmp_path) -> tuple[ObjectStore, str]:
    """Each backend, built through make_object_store, with an empty bucket of its own."""
    if request.param == "local":
        settings = ObjectStoreSettings(backend="local", root=str(tmp_path / "objects"))
        return make_object_store(settings), "bucket-local"
    endpoint = request.getfixturevalue("moto_endpoint")
    client = request.getfixturevalue("s3_client")
    settings = ObjectStoreSettings(backend="s3", endpoint_url=endpoint, region="us-east-1")
    return make_object_store(settings), _new_bucket(client)


# --------------------------------------------------------------------------- the contract


def test_put_then_get_returns_the_same_bytes(store_and_bucket):
    store, bucket = store_and_bucket
    data = bytes(range(256)) * 3
    store.put_bytes(bucket, "results/acme/2025-11-21/blob.bin", data)
    assert store.get_bytes(bucket, "results/acme/2025-11-21/blob.bin") == data


def test_a_rewritten_object_lists_with_a_new_version(store_and_bucket):
    """The input snapshot of a day (fraudcore/snapshot.py) sees a file replaced by one of the same size."""
    store, bucket = store_and_bucket
    store.put_bytes(bucket, "raw/a.jsonl", b"first")
    store.put_bytes(bucket, "raw/b.jsonl", b"stays")
    before = {i.key: i.version for i in store.list(bucket, "raw/")}
    store.put_bytes(bucket, "raw/a.jsonl", b"other")
    after = {i.key: i.version for i in store.list(bucket, "raw/")}
    assert all(before.values())
    assert after["raw/a.jsonl"] != before["raw/a.jsonl"]
    assert after["raw/b.jsonl"] == before["raw/b.jsonl"]


def test_put_replaces_the_previous_version(store_and_bucket):
    store, bucket = store_and_bucket
    store.put_bytes(bucket, "k.txt", b"first version")
    store.put_bytes(bucket, "k.txt", b"second")
    assert store.get_bytes(bucket, "k.txt") == b"second"
    assert store.list(bucket, "") == [ObjectInfo("k.txt", 6)]


def test_list_is_recursive_sorted_and_uses_string_prefixes(store_and_bucket):
    store, bucket = store_and_bucket
    for key, body in [
        ("a/b/2.txt", b"22"),
        ("a/c.txt", b"c"),
        ("b.txt", b"bbbb"),
        ("a/b/1.txt", b"1"),
        ("ab.txt", b"ab"),
    ]:
        store.put_bytes(bucket, key, body)
    assert store.list(bucket, "a/") == [
        ObjectInfo("a/b/1.txt", 1),
        ObjectInfo("a/b/2.txt", 2),
        ObjectInfo("a/c.txt", 1),
    ]
    assert [o.key for o in store.list(bucket, "a")] == ["a/b/1.txt", "a/b/2.txt", "a/c.txt", "ab.txt"]
    assert [o.key for o in store.list(bucket, "a/b/2")] == ["a/b/2.txt"]
    assert [o.key for o in store.list(bucket, "")] == ["a/b/1.txt", "a/b/2.txt", "a/c.txt", "ab.txt", "b.txt"]
    assert store.list(bucket, "nothing/") == []


def test_exists_is_true_only_for_objects(store_and_bucket):
    store, bucket = store_and_bucket
    store.put_bytes(bucket, "dir/file.json", b"{}")
    assert store.exists(bucket, "dir/file.json") is True
    assert store.exists(bucket, "dir/other.json") is False
    assert store.exists(bucket, "dir") is False  # a "folder" is not an object


def test_delete_prefix_removes_only_matching_objects_and_counts_them(store_and_bucket):
    store, bucket = store_and_bucket
    for key in ["run/x/1", "run/x/2", "run/x/deep/3", "run/y/1", "runner"]:
        store.put_bytes(bucket, key, b".")
    assert store.delete_prefix(bucket, "run/x/") == 3
    assert [o.key for o in store.list(bucket, "")] == ["run/y/1", "runner"]
    assert store.delete_prefix(bucket, "run/x/") == 0
    # The emptied folder is gone, so a new write there and a listing behave as on a fresh bucket.
    store.put_bytes(bucket, "run/x/again", b"!")
    assert [o.key for o in store.list(bucket, "run/")] == ["run/x/again", "run/y/1"]


def test_missing_object_raises_object_not_found_naming_the_url(store_and_bucket, tmp_path):
    store, bucket = store_and_bucket
    url = store.url(bucket, "rawdata/acme/2025-11-21/none.jsonl")
    with pytest.raises(ObjectNotFound) as info:
        store.get_bytes(bucket, "rawdata/acme/2025-11-21/none.jsonl")
    assert url in str(info.value)
    assert isinstance(info.value, StorageError)
    dest = tmp_path / "dl" / "none.jsonl"
    with pytest.raises(ObjectNotFound, match="none.jsonl"):
        store.download_file(bucket, "rawdata/acme/2025-11-21/none.jsonl", dest)
    assert not dest.exists()
    assert not dest.parent.exists() or list(dest.parent.iterdir()) == []  # no temp file left


def test_put_file_and_download_file_round_trip(store_and_bucket, tmp_path):
    store, bucket = store_and_bucket
    src = tmp_path / "in.csv"
    src.write_bytes(b"user_id,label\nu1,fraud\n")
    store.put_file(bucket, "labels/in.csv", src)
    dest = tmp_path / "out" / "nested" / "copy.csv"
    store.download_file(bucket, "labels/in.csv", dest)
    assert dest.read_bytes() == b"user_id,label\nu1,fraud\n"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["copy.csv"]  # no temp file left


def test_put_file_of_a_missing_local_file_is_a_storage_error(store_and_bucket, tmp_path):
    store, bucket = store_and_bucket
    with pytest.raises(StorageError, match="not found"):
        store.put_file(bucket, "k", tmp_path / "absent.txt")
    assert store.exists(bucket, "k") is False


def test_url_names_the_backend_location(store_and_bucket):
    store, bucket = store_and_bucket
    url = store.url(bucket, "results/acme/_SUCCESS")
    if isinstance(store, LocalObjectStore):
        assert url == (store.root / bucket / "results" / "acme" / "_SUCCESS").as_uri()
        assert url.startswith("file:///")
    else:
        assert url == f"s3://{bucket}/results/acme/_SUCCESS"


def test_upload_dir_uploads_sorted_with_last_files_at_the_end(store_and_bucket, tmp_path):
    store, bucket = store_and_bucket
    src = tmp_path / "staging"
    for rel, body in [
        ("_SUCCESS", b""),
        ("_manifest.json", b"{}"),
        ("reports/summary.json", b'{"a":1}'),
        ("frontend_data/campaigns.json", b"[]"),
        ("risk_scores/risk_scores.csv.gz", b"gz"),
    ]:
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(body)
    recorder = _RecordingStore(store)
    seen: list[tuple[int, int]] = []
    keys = upload_dir(
        recorder,
        bucket,
        "results/acme/2025-11-21",
        src,
        last=["_manifest.json", "_SUCCESS"],
        progress=lambda done, total: seen.append((done, total)),
    )
    expected = [
        "results/acme/2025-11-21/frontend_data/campaigns.json",
        "results/acme/2025-11-21/reports/summary.json",
        "results/acme/2025-11-21/risk_scores/risk_scores.csv.gz",
        "results/acme/2025-11-21/_manifest.json",
        "results/acme/2025-11-21/_SUCCESS",
    ]
    assert keys == expected
    assert recorder.put_order == expected
    assert seen == [(0, 5), (1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]
    assert store.get_bytes(bucket, "results/acme/2025-11-21/reports/summary.json") == b'{"a":1}'
    assert store.list(bucket, "results/acme/2025-11-21/_SUCCESS") == [
        ObjectInfo("results/acme/2025-11-21/_SUCCESS", 0)
    ]


def test_upload_dir_refuses_before_uploading_when_a_last_file_is_missing(store_and_bucket, tmp_path):
    store, bucket = store_and_bucket
    src = tmp_path / "staging"
    src.mkdir()
    (src / "data.csv").write_bytes(b"x")
    with pytest.raises(StorageError, match="_SUCCESS"):
        upload_dir(store, bucket, "results/acme/2025-11-21/", src, last=["_SUCCESS"])
    assert store.list(bucket, "") == []


def test_download_prefix_mirrors_only_the_folder(store_and_bucket, tmp_path):
    store, bucket = store_and_bucket
    store.put_bytes(bucket, "rawdata/acme/d/logs/a.jsonl", b'{"user_id":"u1"}\n')
    store.put_bytes(bucket, "rawdata/acme/d/events/b.csv", b"user_id\nu2\n")
    store.put_bytes(bucket, "rawdata/acme/d2/logs/other.jsonl", b"not mine")
    seen: list[tuple[int, int]] = []
    dest = tmp_path / "raw"
    got = download_prefix(store, bucket, "rawdata/acme/d", dest, progress=lambda d, t: seen.append((d, t)))
    assert got == [dest / "events" / "b.csv", dest / "logs" / "a.jsonl"]
    assert (dest / "logs" / "a.jsonl").read_bytes() == b'{"user_id":"u1"}\n'
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()) == [
        "events/b.csv",
        "logs/a.jsonl",
    ]
    assert seen == [(0, 2), (1, 2), (2, 2)]


class _RecordingStore:
    """Passes every call to a real store and remembers the order of put_file keys."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.put_order: list[str] = []

    def put_file(self, bucket: str, key: str, path) -> None:
        self.put_order.append(key)
        self.inner.put_file(bucket, key, path)

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


# --------------------------------------------------------------------------- local only


def test_local_write_is_atomic_readers_see_old_content_until_the_rename(tmp_path, monkeypatch):
    store = LocalObjectStore(tmp_path)
    store.put_bytes("b", "dir/obj.bin", b"old")
    real_replace = os.replace
    during: dict[str, object] = {}

    def observing_replace(src, dst):
        # At this moment the new content is fully written, but only to a temp sibling.
        during["files"] = sorted(p.name for p in (tmp_path / "b" / "dir").iterdir())
        during["content"] = store.get_bytes("b", "dir/obj.bin")
        during["listing"] = store.list("b", "")
        real_replace(src, dst)

    monkeypatch.setattr("storage.objectstore.os.replace", observing_replace)
    store.put_bytes("b", "dir/obj.bin", b"new content")
    assert len(during["files"]) == 2  # the object and one temp file
    assert during["content"] == b"old"
    assert during["listing"] == [ObjectInfo("dir/obj.bin", 3)]
    assert store.get_bytes("b", "dir/obj.bin") == b"new content"
    assert sorted(p.name for p in (tmp_path / "b" / "dir").iterdir()) == ["obj.bin"]


def test_local_failed_write_keeps_the_old_object_and_leaves_no_temp_file(tmp_path, monkeypatch):
    store = LocalObjectStore(tmp_path)
    store.put_bytes("b", "obj", b"old")

    def failing_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("storage.objectstore.os.replace", failing_replace)
    with pytest.raises(StorageError, match="No space left"):
        store.put_bytes("b", "obj", b"new")
    monkeypatch.undo()
    assert store.get_bytes("b", "obj") == b"old"
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["obj"]


def test_local_list_skips_temp_files_of_interrupted_writes(tmp_path):
    store = LocalObjectStore(tmp_path)
    store.put_bytes("b", "d/real.json", b"{}")
    (tmp_path / "b" / "d" / f".real.json.tmp-{uuid.uuid4().hex}").write_bytes(b"{half")
    assert store.list("b", "") == [ObjectInfo("d/real.json", 2)]
    assert store.delete_prefix("b", "d/") == 1


@pytest.mark.parametrize("key", ["../escape", "a/../../b", "/abs", "a//b", "dir/", ""])
def test_local_refuses_keys_that_leave_the_bucket(tmp_path, key):
    store = LocalObjectStore(tmp_path / "root")
    with pytest.raises(StorageError, match="invalid object key"):
        store.put_bytes("b", key, b"x")
    assert not (tmp_path / "escape").exists()


def test_local_missing_bucket_lists_empty_and_has_nothing(tmp_path):
    store = LocalObjectStore(tmp_path)
    assert store.list("never-written", "") == []
    assert store.exists("never-written", "k") is False
    assert store.delete_prefix("never-written", "") == 0


# --------------------------------------------------------------------------- S3 only


def test_s3_applies_kms_server_side_encryption_on_every_put(moto_endpoint, s3_client, tmp_path):
    bucket = _new_bucket(s3_client)
    store = S3ObjectStore(endpoint_url=moto_endpoint, sse="aws:kms", kms_key_id="alias/fraud-results")
    store.put_bytes(bucket, "a.json", b"{}")
    src = tmp_path / "b.csv"
    src.write_bytes(b"x\n")
    store.put_file(bucket, "b.csv", src)
    for key in ("a.json", "b.csv"):
        head = s3_client.head_object(Bucket=bucket, Key=key)
        assert head["ServerSideEncryption"] == "aws:kms"
        assert head["SSEKMSKeyId"] == "alias/fraud-results"


def _fresh_client(endpoint: str | None, **kw):
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **kw)


def test_s3_sends_aes256_header_only_when_configured(moto_endpoint, s3_client):
    bucket = _new_bucket(s3_client)
    client = _fresh_client(moto_endpoint)
    sent: list[str | None] = []
    client.meta.events.register(
        "before-call.s3.PutObject",
        lambda params, **_: sent.append(params["headers"].get("x-amz-server-side-encryption")),
    )
    S3ObjectStore(sse="AES256", client=client).put_bytes(bucket, "enc", b"1")
    S3ObjectStore(client=client).put_bytes(bucket, "plain", b"2")
    assert sent == ["AES256", None]
    assert s3_client.head_object(Bucket=bucket, Key="enc")["ServerSideEncryption"] == "AES256"


def test_s3_missing_bucket_is_a_storage_error_saying_what_to_check(moto_endpoint):
    store = S3ObjectStore(endpoint_url=moto_endpoint)
    with pytest.raises(StorageError) as info:
        store.get_bytes("no-such-bucket-here", "k")
    assert not isinstance(info.value, ObjectNotFound)
    assert "s3://no-such-bucket-here/k" in str(info.value)
    assert "check the bucket name" in str(info.value)
    with pytest.raises(StorageError, match="check"):
        store.put_bytes("no-such-bucket-here", "k", b"x")
    with pytest.raises(StorageError, match="check the bucket name"):
        store.list("no-such-bucket-here", "")


def test_s3_exists_raises_on_errors_other_than_not_found(moto_endpoint, s3_client):
    bucket = _new_bucket(s3_client)
    client = _fresh_client(moto_endpoint)

    def deny(**_):
        from botocore.exceptions import ClientError

        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}, "HeadObject")

    client.meta.events.register("before-call.s3.HeadObject", deny)
    with pytest.raises(StorageError, match="AccessDenied.*check the credentials' permissions"):
        S3ObjectStore(client=client).exists(bucket, "k")  # an error, never a silent "no"


def test_s3_list_follows_every_page(moto_endpoint, s3_client, monkeypatch):
    bucket = _new_bucket(s3_client)
    for i in range(5):
        s3_client.put_object(Bucket=bucket, Key=f"p/{i}", Body=b"x" * i)
    client = _fresh_client(moto_endpoint)
    requests: list[str] = []
    client.meta.events.register("before-call.s3.ListObjectsV2", lambda **_: requests.append("list"))
    # S3 pages hold 1000 keys; two keys a page shows the paging without writing thousands of objects.
    real = client.get_paginator

    def small_pages(name):
        paginator = real(name)
        paginate = paginator.paginate
        paginator.paginate = lambda **kw: paginate(PaginationConfig={"PageSize": 2}, **kw)
        return paginator

    monkeypatch.setattr(client, "get_paginator", small_pages)
    got = S3ObjectStore(client=client).list(bucket, "p/")
    assert got == [ObjectInfo(f"p/{i}", i) for i in range(5)]
    assert len(requests) == 3


def test_s3_unreachable_endpoint_says_to_check_the_endpoint():
    from botocore.config import Config

    client = _fresh_client(
        "http://127.0.0.1:9",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=Config(retries={"max_attempts": 1}, connect_timeout=1),
    )
    store = S3ObjectStore(endpoint_url="http://127.0.0.1:9", client=client)
    with pytest.raises(StorageError, match="check endpoint_url"):
        store.exists("b", "k")


# --------------------------------------------------------------------------- settings


def test_settings_from_env_override_given_defaults():
    defaults = ObjectStoreSettings(backend="local", root="/srv/objects", region="eu-west-1")
    env = {
        "FRAUDBATCH_OBJECTSTORE_BACKEND": "s3",
        "FRAUDBATCH_S3_ENDPOINT": "http://minio:9000",
        "FRAUDBATCH_S3_SSE": "aws:kms",
        "FRAUDBATCH_S3_KMS_KEY_ID": "key-1",
        "FRAUDBATCH_S3_REGION": "",
    }
    got = ObjectStoreSettings.from_env(defaults, environ=env)
    assert got == ObjectStoreSettings(
        backend="s3",
        root="/srv/objects",
        endpoint_url="http://minio:9000",
        region="eu-west-1",
        sse="aws:kms",
        kms_key_id="key-1",
    )
    store = make_object_store(got)
    assert isinstance(store, S3ObjectStore)
    assert (store.endpoint_url, store.region, store.sse, store.kms_key_id) == (
        "http://minio:9000",
        "eu-west-1",
        "aws:kms",
        "key-1",
    )


def test_settings_from_a_mapping_of_config_values(tmp_path):
    got = ObjectStoreSettings.from_env({"backend": "local", "root": str(tmp_path), "sse": ""}, environ={})
    assert got.sse is None
    store = make_object_store(got)
    assert isinstance(store, LocalObjectStore) and store.root == tmp_path


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FRAUDBATCH_OBJECTSTORE_BACKEND": "gcs"}, "choose one of local, s3"),
        ({"FRAUDBATCH_OBJECTSTORE_BACKEND": "local"}, "FRAUDBATCH_OBJECTSTORE_ROOT"),
        ({"FRAUDBATCH_OBJECTSTORE_BACKEND": "s3", "FRAUDBATCH_S3_SSE": "aes"}, "FRAUDBATCH_S3_SSE='aes'"),
        ({"FRAUDBATCH_OBJECTSTORE_BACKEND": "s3", "FRAUDBATCH_S3_KMS_KEY_ID": "k"}, "not aws:kms"),
    ],
)
def test_invalid_settings_name_what_to_fix(env, message):
    with pytest.raises(StorageConfigError, match=message):
        ObjectStoreSettings.from_env(environ=env)


def test_local_store_root_is_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert LocalObjectStore("rel").root == Path(tmp_path / "rel")
