"""Exit 0 when a CQL node answers `SELECT release_version` (scripts/cassandra.sh readiness check)."""

from __future__ import annotations

import argparse
import logging
import ssl
import sys


def main(argv: list[str] | None = None) -> int:
    """Connect once, print the node's release version, and return 0; 1 with the reason otherwise."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9042)
    parser.add_argument("--ca-file", default="", help="PEM CA of a TLS node; empty for plaintext")
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    # The driver logs every failed connection attempt; the exit code says enough here.
    logging.getLogger("cassandra").setLevel(logging.CRITICAL)
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import DCAwareRoundRobinPolicy

    ssl_context = None
    if args.ca_file:
        ssl_context = ssl.create_default_context(cafile=args.ca_file)
    profile = ExecutionProfile(load_balancing_policy=DCAwareRoundRobinPolicy(), request_timeout=args.timeout)
    cluster = Cluster(
        [args.host],
        port=args.port,
        connect_timeout=args.timeout,
        ssl_context=ssl_context,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        protocol_version=5,
    )
    try:
        session = cluster.connect()
        version = session.execute("SELECT release_version FROM system.local").one()[0]
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"
        if not args.quiet:
            print(f"no CQL answer from {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    finally:
        cluster.shutdown()
    if not args.quiet:
        print(f"CQL ok at {args.host}:{args.port}: Cassandra {version}{' (TLS)' if args.ca_file else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
