"""Object storage behind one interface: a local directory or S3 (boto3), picked by config."""

from __future__ import annotations

import builtins
import os
import re
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from fraudcore import atomic
from storage.errors import ObjectNotFound, StorageConfigError, StorageError

__all__ = [
    "LocalObjectStore",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectStore",
    "ObjectStoreSettings",
    "S3ObjectStore",
    "StorageConfigError",
    "StorageError",
    "make_object_store",
]

PathLike = str | os.PathLike[str]

SSE_MODES = ("AES256", "aws:kms")

# Temporary files of in-flight local writes, next to the target: fraudcore.atomic's
# ".{name}.tmp-{8 hex}", and the ".{name}.tmp-{32 hex}" an interrupted write of older releases left.
_TMP_RE = re.compile(r"^\..+\.tmp-[0-9a-f]{8}(?:[0-9a-f]{24})?$")
_BUCKET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True, order=True)
class ObjectInfo:
    """One stored object: its key, size in bytes, and a version that changes when it is rewritten.

    The version is the S3 ETag, or the file's inode and modification time in nanoseconds for
    the local backend. It is left out of comparisons, so listings compare by key and size alone.
    """

    key: str
    size: int
    version: str = field(default="", compare=False)


@runtime_checkable
class ObjectStore(Protocol):
    """Bucket/key object storage; every backend behaves the same for these calls."""

    def put_bytes(self, bucket: str, key: str, data: bytes) -> None:
        """Store `data` as the object, replacing any previous version."""
        ...

    def put_file(self, bucket: str, key: str, path: PathLike) -> None:
        """Store the local file as the object, replacing any previous version."""
        ...

    def get_bytes(self, bucket: str, key: str) -> bytes:
        """The object's content, or ObjectNotFound."""
        ...

    def download_file(self, bucket: str, key: str, path: PathLike) -> None:
        """The object copied to a local file (written atomically), or ObjectNotFound."""
        ...

    def list(self, bucket: str, prefix: str = "") -> builtins.list[ObjectInfo]:
        """Every object whose key starts with `prefix`, at any depth, sorted by key."""
        ...

    def exists(self, bucket: str, key: str) -> bool:
        """True when the object exists; errors other than "not found" are raised."""
        ...

    def delete_prefix(self, bucket: str, prefix: str) -> int:
        """Number of objects deleted whose key starts with `prefix`."""
        ...

    def url(self, bucket: str, key: str) -> str:
        """A url naming the object, for messages (file:///… or s3://bucket/key)."""
        ...


# --------------------------------------------------------------------------- local directory


class LocalObjectStore:
    """Objects as files `{root}/{bucket}/{key}`; writes are atomic (through fraudcore.atomic)."""

    def __init__(self, root: PathLike) -> None:
        self.root = Path(root).absolute()

    def __repr__(self) -> str:
        return f"LocalObjectStore({str(self.root)!r})"

    def _bucket_dir(self, bucket: str) -> Path:
        if not _BUCKET_RE.match(bucket or ""):
            raise StorageError(f"invalid bucket name {bucket!r}: must match {_BUCKET_RE.pattern}")
        return self.root / bucket

    def _path(self, bucket: str, key: str) -> Path:
        # Keys become file paths: refuse anything that could leave the bucket folder or that
        # a directory tree cannot hold (empty segments, "." / "..", a trailing slash).
        parts = key.split("/") if key else [""]
        if any(p in ("", ".", "..") for p in parts) or "\\" in key or "\0" in key:
            raise StorageError(f"invalid object key {key!r} for a local store")
        if _TMP_RE.match(parts[-1]):
            raise StorageError(f"invalid object key {key!r}: the name is reserved for temporary files")
        return self._bucket_dir(bucket).joinpath(*parts)

    def url(self, bucket: str, key: str) -> str:
        return (self.root / bucket / key).as_uri()

    def put_bytes(self, bucket: str, key: str, data: bytes) -> None:
        target = self._path(bucket, key)
        self._atomic_write(target, lambda f: f.write(data))

    def put_file(self, bucket: str, key: str, path: PathLike) -> None:
        source = Path(path)
        if not source.is_file():
            raise StorageError(f"cannot store {self.url(bucket, key)}: local file {source} not found")
        target = self._path(bucket, key)
        with source.open("rb") as src:
            self._atomic_write(target, lambda f: shutil.copyfileobj(src, f, 1 << 20))

    def get_bytes(self, bucket: str, key: str) -> bytes:
        path = self._path(bucket, key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(f"object not found: {self.url(bucket, key)}") from None
        except OSError as exc:
            raise StorageError(f"cannot read {self.url(bucket, key)}: {exc}; check file permissions") from exc

    def download_file(self, bucket: str, key: str, path: PathLike) -> None:
        source = self._path(bucket, key)
        if not source.is_file():
            raise ObjectNotFound(f"object not found: {self.url(bucket, key)}")
        with source.open("rb") as src:
            _atomic_local_write(Path(path), lambda f: shutil.copyfileobj(src, f, 1 << 20))

    def list(self, bucket: str, prefix: str = "") -> builtins.list[ObjectInfo]:
        bucket_dir = self._bucket_dir(bucket)
        # Walk only the folder the prefix points into; the rest of its last segment is a
        # plain string prefix, as on S3 ("a/b" matches "a/b.txt" and "a/bc/d").
        head = prefix.rpartition("/")[0]
        start = bucket_dir.joinpath(*head.split("/")) if head else bucket_dir
        if ".." in head.split("/") or not start.is_dir():
            return []
        out = []
        for dirpath, _dirs, files in os.walk(start):
            rel_dir = Path(dirpath).relative_to(bucket_dir).as_posix()
            for name in files:
                if _TMP_RE.match(name):
                    continue
                key = name if rel_dir == "." else f"{rel_dir}/{name}"
                if key.startswith(prefix):
                    try:
                        st = os.stat(os.path.join(dirpath, name))
                    except FileNotFoundError:  # deleted while we walked
                        continue
                    # A replaced file is a new inode (writes go through a renamed temporary file);
                    # one written over in place has a new mtime.
                    out.append(ObjectInfo(key, st.st_size, f"{st.st_ino}-{st.st_mtime_ns}"))
        out.sort()
        return out

    def exists(self, bucket: str, key: str) -> bool:
        return self._path(bucket, key).is_file()

    def delete_prefix(self, bucket: str, prefix: str) -> int:
        bucket_dir = self._bucket_dir(bucket)
        infos = self.list(bucket, prefix)
        for info in infos:
            self._path(bucket, info.key).unlink(missing_ok=True)
        # Drop folders the deletion emptied, deepest first, but never the bucket itself.
        dirs = {self._path(bucket, i.key).parent for i in infos}
        for d in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
            while d != bucket_dir and bucket_dir in d.parents:
                try:
                    d.rmdir()
                except OSError:
                    break  # not empty (other keys, an in-flight write)
                d = d.parent
        return len(infos)

    def _atomic_write(self, target: Path, write: Callable[[Any], object]) -> None:
        try:
            _atomic_local_write(target, write)
        except OSError as exc:
            raise StorageError(
                f"cannot write {target.as_uri()}: {exc}; check the folder's permissions and free space"
            ) from exc


def _atomic_local_write(target: Path, write: Callable[[Any], object]) -> None:
    """`target` replaced by what `write` streams into a temporary sibling; readers never see half a file."""
    with atomic.atomic_file(target) as f:
        write(f)


# --------------------------------------------------------------------------- S3


_NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_ACCESS_CODES = frozenset(
    {
        "AccessDenied",
        "403",
        "Forbidden",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "KMS.AccessDeniedException",
        "KMS.NotFoundException",
    }
)


class S3ObjectStore:
    """Objects in S3 (or an S3-compatible endpoint) through boto3, with optional server-side encryption."""

    def __init__(
        self,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        sse: str | None = None,
        kms_key_id: str | None = None,
        client: Any = None,
    ) -> None:
        if sse not in (None, *SSE_MODES):
            raise StorageConfigError(f"S3 sse must be one of {', '.join(SSE_MODES)} or empty, got {sse!r}")
        if kms_key_id and sse != "aws:kms":
            raise StorageConfigError("S3 kms_key_id is set but sse is not 'aws:kms'; set sse=aws:kms")
        self.endpoint_url = endpoint_url or None
        self.region = region
        self.sse = sse
        self.kms_key_id = kms_key_id or None
        self._client = client

    def __repr__(self) -> str:
        return f"S3ObjectStore(endpoint_url={self.endpoint_url!r}, region={self.region!r}, sse={self.sse!r})"

    @property
    def client(self) -> Any:
        """The boto3 S3 client, created on first use (so a store can be built before a fork)."""
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.client(
                "s3",
                endpoint_url=self.endpoint_url,
                region_name=self.region,
                config=Config(retries={"mode": "standard", "max_attempts": 5}),
            )
        return self._client

    def _sse_args(self) -> dict[str, str]:
        # SPEC §8: every object we write is encrypted at rest when configured.
        if self.sse is None:
            return {}
        args = {"ServerSideEncryption": self.sse}
        if self.sse == "aws:kms" and self.kms_key_id:
            args["SSEKMSKeyId"] = self.kms_key_id
        return args

    def url(self, bucket: str, key: str) -> str:
        return f"s3://{bucket}/{key}"

    def put_bytes(self, bucket: str, key: str, data: bytes) -> None:
        try:
            self.client.put_object(Bucket=bucket, Key=key, Body=data, **self._sse_args())
        except Exception as exc:
            raise self._error(exc, "upload to", bucket, key) from exc

    def put_file(self, bucket: str, key: str, path: PathLike) -> None:
        source = Path(path)
        if not source.is_file():
            raise StorageError(f"cannot store {self.url(bucket, key)}: local file {source} not found")
        try:
            # upload_file switches to parallel multipart uploads for large files.
            self.client.upload_file(str(source), bucket, key, ExtraArgs=self._sse_args() or None)
        except Exception as exc:
            raise self._error(exc, "upload to", bucket, key) from exc

    def get_bytes(self, bucket: str, key: str) -> bytes:
        try:
            body: bytes = self.client.get_object(Bucket=bucket, Key=key)["Body"].read()
            return body
        except Exception as exc:
            raise self._error(exc, "read of", bucket, key) from exc

    def download_file(self, bucket: str, key: str, path: PathLike) -> None:
        try:
            # download_fileobj fetches large objects in parallel ranged parts, like download_file.
            _atomic_local_write(Path(path), lambda f: self.client.download_fileobj(bucket, key, f))
        except Exception as exc:
            raise self._error(exc, "download of", bucket, key) from exc

    def list(self, bucket: str, prefix: str = "") -> builtins.list[ObjectInfo]:
        out: builtins.list[ObjectInfo] = []
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for page in pages:
                out.extend(
                    ObjectInfo(o["Key"], int(o["Size"]), str(o.get("ETag", "")).strip('"'))
                    for o in page.get("Contents", ())
                )
        except Exception as exc:
            raise self._error(exc, "listing of", bucket, prefix) from exc
        out.sort()
        return out

    def exists(self, bucket: str, key: str) -> bool:
        try:
            self.client.head_object(Bucket=bucket, Key=key)
        except Exception as exc:
            err = self._error(exc, "existence check of", bucket, key)
            # Only "not found" means no; an outage or a permission error must not read as
            # "not there" (a caller would then redo and re-push finished work).
            if isinstance(err, ObjectNotFound):
                return False
            raise err from exc
        return True

    def delete_prefix(self, bucket: str, prefix: str) -> int:
        keys = [o.key for o in self.list(bucket, prefix)]
        for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000 keys
            chunk = keys[start : start + 1000]
            try:
                resp = self.client.delete_objects(
                    Bucket=bucket, Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True}
                )
            except Exception as exc:
                raise self._error(exc, "delete under", bucket, prefix) from exc
            errors = resp.get("Errors") or []
            if errors:
                first = errors[0]
                raise StorageError(
                    f"S3 delete of {len(errors)} object(s) under {self.url(bucket, prefix)} failed, first "
                    f"{first.get('Key')}: {first.get('Code')} {first.get('Message')}; check delete permissions"
                )
        return len(keys)

    def _error(self, exc: BaseException, action: str, bucket: str, key: str) -> StorageError:
        """A StorageError for a failed boto3 call, naming the url and what to check (SPEC §7)."""
        from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

        url = self.url(bucket, key)
        if isinstance(exc, StorageError):
            return exc
        cause = exc
        # boto3's upload_file wraps the ClientError in S3UploadFailedError; judge by the original.
        if not isinstance(cause, ClientError) and isinstance(cause.__context__, ClientError):
            cause = cause.__context__
        if isinstance(cause, ClientError):
            error = cause.response.get("Error", {})
            code = str(error.get("Code", ""))
            message = error.get("Message", "") or ""
            if code in _NOT_FOUND_CODES:
                return ObjectNotFound(f"object not found: {url}")
            if code == "NoSuchBucket":
                hint = f"check the bucket name {bucket!r} (client registry) and the endpoint"
            elif code in _ACCESS_CODES or code.startswith("KMS"):
                hint = "check the credentials' permissions on this bucket and path"
                if self.sse == "aws:kms":
                    hint += " and on the KMS key"
            else:
                hint = "check permissions and paths"
            return StorageError(f"S3 {action} {url} failed ({code}: {message}); {hint}")
        if isinstance(exc, NoCredentialsError):
            hint = "no AWS credentials found; check the environment, profile or instance role"
        elif isinstance(exc, EndpointConnectionError):
            hint = f"cannot reach the S3 endpoint; check endpoint_url ({self.endpoint_url or 'AWS default'}) and the network"
        else:
            hint = "check permissions and paths"
        return StorageError(f"S3 {action} {url} failed: {exc}; {hint}")


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class ObjectStoreSettings:
    """Which object store backend to use and how to reach it; `from_env` applies FRAUDBATCH_* overrides."""

    backend: str = "local"
    """"local" (a directory) or "s3" (FRAUDBATCH_OBJECTSTORE_BACKEND)."""

    root: str = ""
    """Folder holding one sub-folder per bucket, for the local backend (FRAUDBATCH_OBJECTSTORE_ROOT)."""

    endpoint_url: str | None = None
    """S3 endpoint; empty means AWS itself (FRAUDBATCH_S3_ENDPOINT)."""

    region: str = "us-east-1"
    """S3 region (FRAUDBATCH_S3_REGION)."""

    sse: str | None = None
    """Server-side encryption of written objects: AES256, aws:kms or empty (FRAUDBATCH_S3_SSE)."""

    kms_key_id: str | None = None
    """KMS key for sse=aws:kms; empty means the account's default key (FRAUDBATCH_S3_KMS_KEY_ID)."""

    @classmethod
    def from_env(
        cls,
        defaults: ObjectStoreSettings | Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> ObjectStoreSettings:
        """`defaults` (settings or a field mapping, e.g. from luigi.cfg) overridden by set environment variables."""
        env = os.environ if environ is None else environ
        if defaults is None:
            base = cls()
        elif isinstance(defaults, ObjectStoreSettings):
            base = defaults
        else:
            known = {f.name for f in fields(cls)}
            unknown = sorted(set(defaults) - known)
            if unknown:
                raise StorageConfigError(f"unknown object store settings {unknown}; known: {sorted(known)}")
            base = cls(**defaults)
        values = {}
        for var, name in _OBJECTSTORE_ENV.items():
            raw = env.get(var)
            if raw is not None and raw.strip() != "":
                values[name] = raw.strip()
        settings = replace(base, **values)
        # An empty string from a config file means "not set", as for the environment.
        settings = replace(
            settings,
            endpoint_url=settings.endpoint_url or None,
            sse=settings.sse or None,
            kms_key_id=settings.kms_key_id or None,
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        """Raise StorageConfigError, naming the variable to set, on settings no store can run with."""
        if self.backend not in _OBJECTSTORE_BACKENDS:
            raise StorageConfigError(
                f"unknown object store backend {self.backend!r} (FRAUDBATCH_OBJECTSTORE_BACKEND); "
                f"choose one of {', '.join(sorted(_OBJECTSTORE_BACKENDS))}"
            )
        if self.backend == "local" and not self.root:
            raise StorageConfigError(
                "the local object store needs a root folder; set FRAUDBATCH_OBJECTSTORE_ROOT"
            )
        if self.sse not in (None, *SSE_MODES):
            raise StorageConfigError(
                f"FRAUDBATCH_S3_SSE={self.sse!r} is not supported; use {' or '.join(SSE_MODES)} or leave it empty"
            )
        if self.kms_key_id and self.sse != "aws:kms":
            raise StorageConfigError("FRAUDBATCH_S3_KMS_KEY_ID is set but FRAUDBATCH_S3_SSE is not aws:kms")


_OBJECTSTORE_ENV = {
    "FRAUDBATCH_OBJECTSTORE_BACKEND": "backend",
    "FRAUDBATCH_OBJECTSTORE_ROOT": "root",
    "FRAUDBATCH_S3_ENDPOINT": "endpoint_url",
    "FRAUDBATCH_S3_REGION": "region",
    "FRAUDBATCH_S3_SSE": "sse",
    "FRAUDBATCH_S3_KMS_KEY_ID": "kms_key_id",
}

# The one place a backend name becomes a store.
_OBJECTSTORE_BACKENDS: dict[str, Callable[[ObjectStoreSettings], ObjectStore]] = {
    "local": lambda s: LocalObjectStore(s.root),
    "s3": lambda s: S3ObjectStore(
        endpoint_url=s.endpoint_url, region=s.region, sse=s.sse, kms_key_id=s.kms_key_id
    ),
}


def make_object_store(settings: ObjectStoreSettings) -> ObjectStore:
    """The object store the settings name."""
    settings.validate()
    return _OBJECTSTORE_BACKENDS[settings.backend](settings)
