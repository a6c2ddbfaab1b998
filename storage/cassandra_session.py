"""Cassandra connections for the table store, the DFE writer and the migrations.

The driver settings (token-aware routing over the local data centre, consistency, protocol,
TLS, authentication, timeouts) for both drivers, connecting, and the bounded retries with the
error that names the node to check.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

from cassandra import ConsistencyLevel, DriverException, OperationTimedOut, Timeout, Unavailable
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, NoHostAvailable, Session
from cassandra.connection import ConnectionException
from cassandra.policies import DCAwareRoundRobinPolicy, ExponentialReconnectionPolicy, TokenAwarePolicy
from cassandra.protocol import ErrorMessage

from storage.errors import StorageError
from storage.model import TableStoreSettings

__all__ = [
    "REQUEST_TIMEOUT_S",
    "RETRY_DELAYS_S",
    "TRANSIENT_ERRORS",
    "CassandraWriteError",
    "build_cluster",
    "connect",
    "describe_error",
    "native_cluster",
    "node_hint",
    "open_session",
    "retrying",
    "ssl_context_for",
]

log = logging.getLogger(__name__)

# Seconds the driver waits for one request; a timed-out write is retried like a refused one.
# Read when a cluster is built, so a caller (the benchmark) may raise it for the whole process.
REQUEST_TIMEOUT_S = 12.0

# Bounded retries for a node that is down or restarting: about 15 s in all before giving up.
RETRY_DELAYS_S = (0.5, 1.0, 2.0, 4.0, 8.0)

T = TypeVar("T")

# Errors that a node coming back (or a less busy one) can cure; anything else fails at once.
TRANSIENT_ERRORS = (NoHostAvailable, OperationTimedOut, ConnectionException, Unavailable, Timeout, OSError)


class CassandraWriteError(StorageError):
    """A write to Cassandra failed after its retries; the message names the node to check."""


def node_hint(settings: TableStoreSettings) -> str:
    """What an operator checks when Cassandra fails: the contact points, port and credentials."""
    hosts = ",".join(settings.cassandra_hosts)
    return f"check the node at {hosts}:{settings.cassandra_port} and credentials"


def describe_error(exc: BaseException) -> str:
    """An exception as `Type: message`, for error texts and logs."""
    return f"{type(exc).__name__}: {exc}"


# --------------------------------------------------------------------------- Python driver (DataStax)


def ssl_context_for(settings: TableStoreSettings) -> ssl.SSLContext | None:
    """A verifying TLS context when a CA file is configured (SPEC §8), else None for plaintext."""
    if not settings.cassandra_tls_ca_file:
        return None
    ctx = ssl.create_default_context(cafile=settings.cassandra_tls_ca_file)
    if settings.cassandra_tls_cert_file:
        ctx.load_cert_chain(settings.cassandra_tls_cert_file, settings.cassandra_tls_key_file)
    return ctx


def build_cluster(settings: TableStoreSettings, *, request_timeout: float | None = None) -> Cluster:
    """An unconnected driver Cluster for the settings: token-aware routing, consistency, TLS, auth."""
    profile = ExecutionProfile(
        load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy(local_dc=settings.cassandra_local_dc)),
        consistency_level=ConsistencyLevel.name_to_value[settings.cassandra_consistency.upper()],
        request_timeout=REQUEST_TIMEOUT_S if request_timeout is None else request_timeout,
    )
    auth = None
    if settings.cassandra_username:
        auth = PlainTextAuthProvider(settings.cassandra_username, settings.cassandra_password)
    return Cluster(
        list(settings.cassandra_hosts),
        port=int(settings.cassandra_port),
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        auth_provider=auth,
        ssl_context=ssl_context_for(settings),
        # v4 rather than v5: v5 frames every request with checksums computed in Python, which cost
        # about 15 % more client CPU per row in the DFE benchmark; pinning also skips negotiation.
        protocol_version=4,
        # Off: the rows are small and the CPU is better spent on serialising them.
        compression=False,
        connect_timeout=5.0,
        # A restarted node is picked up within a second or two instead of the default minutes.
        reconnection_policy=ExponentialReconnectionPolicy(base_delay=0.5, max_delay=4.0),
    )


def open_session(settings: TableStoreSettings) -> tuple[Cluster, Session]:
    """A connected (cluster, session) in one attempt, or the driver's own error."""
    cluster = build_cluster(settings)
    try:
        return cluster, cluster.connect()
    except BaseException:
        cluster.shutdown()
        raise


def connect(
    settings: TableStoreSettings, *, delays: Iterable[float] = RETRY_DELAYS_S
) -> tuple[Cluster, Session]:
    """A connected (cluster, session), retried with backoff; StorageError naming the node otherwise."""
    return retrying(settings, "connect failed", lambda: open_session(settings), delays, error=StorageError)


def retrying(
    settings: TableStoreSettings,
    action: str,
    fn: Callable[[], T],
    delays: Iterable[float] = RETRY_DELAYS_S,
    error: type[StorageError] = CassandraWriteError,
    what: str = "",
) -> T:
    """fn() retried with backoff on transient errors (node down, timeouts); then `error` naming the node."""
    waits = list(delays)
    for attempt in range(len(waits) + 1):
        try:
            return fn()
        except CassandraWriteError:
            raise
        except TRANSIENT_ERRORS as exc:
            if attempt == len(waits):
                raise error(
                    f"Cassandra {action}: {what}{describe_error(exc)} (after {attempt + 1} attempts); "
                    f"{node_hint(settings)}"
                ) from exc
            log.warning("Cassandra %s: %s; retrying in %.1f s", action, describe_error(exc), waits[attempt])
            time.sleep(waits[attempt])
        except (DriverException, ErrorMessage) as exc:
            # A rejected statement (missing keyspace, bad credentials) will not heal by waiting.
            raise error(f"Cassandra {action}: {what}{describe_error(exc)}; {node_hint(settings)}") from exc
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------- native driver (acsylla)


class _ApacheCassandraNoise(logging.Filter):
    """Drops the driver's note that Apache Cassandra (unlike ScyllaDB) has no shards to route to."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "SHARD-AWARENESS" not in record.getMessage()


logging.getLogger("acsylla").addFilter(_ApacheCassandraNoise())

# cpp-driver verification flags: the chain against the CA, and the node's address against the
# certificate. acsylla's enum has no combined member and its factory reads `.value`.
_VERIFY_PEER_CERT_AND_IDENTITY = SimpleNamespace(value=0x01 | 0x02)


def native_cluster(settings: TableStoreSettings, *, request_timeout: float | None = None) -> Any:
    """An acsylla Cluster for the settings: token-aware over the local DC, consistency, TLS, auth.

    Protocol v4 like the Python driver; one I/O thread and one connection per host, which the
    C++ driver multiplexes over thousands of streams.
    """
    import acsylla

    tls: dict[str, Any] = {}
    if settings.cassandra_tls_ca_file:
        tls = {
            "ssl_enabled": True,
            "ssl_trusted_cert": Path(settings.cassandra_tls_ca_file).read_text(),
            "ssl_verify_flags": _VERIFY_PEER_CERT_AND_IDENTITY,
        }
        if settings.cassandra_tls_cert_file:
            tls["ssl_cert"] = Path(settings.cassandra_tls_cert_file).read_text()
            tls["ssl_private_key"] = Path(settings.cassandra_tls_key_file).read_text()
    return acsylla.create_cluster(
        list(settings.cassandra_hosts),
        port=int(settings.cassandra_port),
        username=settings.cassandra_username or None,
        password=settings.cassandra_password or None,
        protocol_version=4,
        consistency=settings.cassandra_consistency.upper(),
        load_balance_dc_aware=settings.cassandra_local_dc,
        token_aware_routing=True,
        connect_timeout=5.0,
        request_timeout=REQUEST_TIMEOUT_S if request_timeout is None else request_timeout,
        exponential_reconnect_base_delay_ms=500,
        exponential_reconnect_max_delay_ms=4000,
        num_threads_io=1,
        log_level="warn",
        **tls,
    )
