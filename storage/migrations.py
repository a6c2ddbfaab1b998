"""Schema migrations: apply cql/NNN_*.cql in order, once each, recorded in <keyspace>.schema_migrations.

    python -m storage.migrations --hosts 127.0.0.1 --port 9042 [--keyspace fraud] [--replication SimpleStrategy:1]

A file's statements are split on `;` outside quotes and comments; `${keyspace}`, `${fp_keyspace}` and
`${replication}` are substituted from validated settings (identifiers and a replication map the runner
renders itself), never from free text. An applied file whose text changed is refused.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from storage.errors import StorageError
from storage.model import Replication, TableStoreSettings, check_identifier, parse_replication, setting

__all__ = [
    "Migration",
    "MigrationError",
    "apply_migrations",
    "load_migrations",
    "main",
    "render_statements",
    "split_statements",
]

CQL_DIR = Path(__file__).resolve().parent.parent / "cql"
_FILE_RE = re.compile(r"^(\d{3})_([a-z0-9_]+)\.cql$")
_PLACEHOLDER_RE = re.compile(r"\$\{([a-z_]+)\}")


class MigrationError(StorageError):
    """A migration cannot be applied; the message names the file and what to do."""


@dataclass(frozen=True)
class Migration:
    """One numbered schema file and the sha256 of its text."""

    version: int
    name: str
    path: Path
    text: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


def load_migrations(cql_dir: Path = CQL_DIR) -> list[Migration]:
    """The numbered files of `cql_dir` in version order; gaps, duplicates and stray .cql files are refused."""
    found: list[Migration] = []
    for path in sorted(Path(cql_dir).glob("*.cql")):
        m = _FILE_RE.match(path.name)
        if not m:
            raise MigrationError(
                f"{path}: schema files must be named NNN_name.cql (three digits, lower case)"
            )
        found.append(Migration(int(m.group(1)), m.group(2), path, path.read_text(encoding="utf-8")))
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise MigrationError(
            f"schema files in {cql_dir} must be numbered 001, 002, … without gaps or repeats; "
            f"found {', '.join(f'{v:03d}' for v in versions)}"
        )
    return found


def split_statements(text: str) -> list[str]:
    """The statements of a CQL file without comments, split on `;` outside quotes, comments and $$ bodies."""
    out: list[str] = []
    buf: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c, two = text[i], text[i : i + 2]
        if two in ("--", "//"):
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif two == "/*":
            end = text.find("*/", i + 2)
            if end < 0:
                raise MigrationError("unterminated /* comment")
            buf.append(" ")
            i = end + 2
        elif c in ("'", '"') or two == "$$":
            close = "$$" if two == "$$" else c
            j = i + len(close)
            while True:
                k = text.find(close, j)
                if k < 0:
                    raise MigrationError(f"unterminated {close} quote")
                # A doubled quote is an escaped quote inside the literal.
                if close != "$$" and text[k + 1 : k + 2] == close:
                    j = k + 2
                    continue
                break
            buf.append(text[i : k + len(close)])
            i = k + len(close)
        elif c == ";":
            stmt = "".join(buf).strip()
            if stmt:
                out.append(stmt)
            buf = []
            i += 1
        else:
            buf.append(c)
            i += 1
    tail = "".join(buf).strip()
    if tail:
        raise MigrationError(f"statement without a closing ';': {tail[:80]!r}")
    return out


def render_statements(text: str, values: Mapping[str, str]) -> list[str]:
    """The file's statements with `${name}` placeholders outside string literals replaced from `values`."""
    rendered = []
    for stmt in split_statements(text):
        parts = re.split(r"('(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\$\$.*?\$\$)", stmt, flags=re.S)
        for idx in range(0, len(parts), 2):  # even parts are outside literals

            def sub(m: re.Match[str]) -> str:
                if m.group(1) not in values:
                    raise MigrationError(f"unknown placeholder ${{{m.group(1)}}}; known: {sorted(values)}")
                return values[m.group(1)]

            parts[idx] = _PLACEHOLDER_RE.sub(sub, parts[idx])
        rendered.append("".join(parts))
    return rendered


_BOOTSTRAP = (
    "CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = {replication}",
    "CREATE TABLE IF NOT EXISTS {ks}.schema_migrations ("
    " version INT, name TEXT, checksum TEXT, applied_at TIMESTAMP, PRIMARY KEY (version))",
)


def apply_migrations(
    session: Any,
    keyspace: str = "fraud",
    fp_keyspace: str = "fp_features",
    replication: str | Replication = "SimpleStrategy:1",
    cql_dir: Path = CQL_DIR,
    log: Callable[[str], None] = print,
) -> list[int]:
    """Apply the not yet applied files to a connected driver session; the versions applied this time."""
    ks = check_identifier(keyspace)
    fp = check_identifier(fp_keyspace, "FP keyspace")
    rep = replication if isinstance(replication, Replication) else parse_replication(replication)
    values = {"keyspace": ks, "fp_keyspace": fp, "replication": rep.cql()}
    migrations = load_migrations(cql_dir)
    # Everything is rendered before anything runs, so a bad file never leaves a half-applied run.
    planned = [(m, render_statements(m.text, values)) for m in migrations]
    for stmt in _BOOTSTRAP:
        session.execute(stmt.format(ks=ks, replication=rep.cql()))
    applied = {
        r.version: (r.name, r.checksum)
        for r in session.execute(f"SELECT version, name, checksum FROM {ks}.schema_migrations")
    }
    unknown = sorted(set(applied) - {m.version for m in migrations})
    if unknown:
        raise MigrationError(
            f"keyspace {ks} records applied versions {unknown} that {cql_dir} does not have; "
            "this checkout is older than the schema — update it before migrating"
        )
    record = session.prepare(
        f"INSERT INTO {ks}.schema_migrations (version, name, checksum, applied_at) VALUES (?, ?, ?, ?)"
    )
    done: list[int] = []
    for m, statements in planned:
        if m.version in applied:
            name, checksum = applied[m.version]
            if checksum != m.checksum:
                raise MigrationError(
                    f"{m.path.name} was changed after it was applied to keyspace {ks} (recorded sha256 "
                    f"{checksum[:12]}…, file now {m.checksum[:12]}…); applied files are never edited — "
                    f"restore it and put the change in a new file numbered {len(migrations) + 1:03d}"
                )
            continue
        for stmt in statements:
            try:
                session.execute(stmt)
            except Exception as exc:
                raise MigrationError(
                    f"{m.path.name} failed on keyspace {ks}: {exc}; statement: {' '.join(stmt.split())[:200]}"
                ) from exc
        session.execute(record, (m.version, m.name, m.checksum, dt.datetime.now(dt.UTC)))
        log(f"applied {m.path.name} to {ks}")
        done.append(m.version)
    return done


def main(argv: Iterable[str] | None = None) -> int:
    """Console entry: connect with the table store settings (flags win) and apply pending migrations."""
    base = TableStoreSettings.from_env(environ=_cassandra_env())
    p = argparse.ArgumentParser(prog="python -m storage.migrations", description=__doc__.splitlines()[0])
    p.add_argument("--hosts", default=",".join(base.cassandra_hosts), help="comma-separated contact points")
    p.add_argument("--port", type=int, default=base.cassandra_port)
    p.add_argument("--keyspace", default=base.cassandra_keyspace)
    p.add_argument("--fp-keyspace", default="fp_features")
    p.add_argument("--replication", default=base.cassandra_replication)
    p.add_argument("--cql-dir", type=Path, default=CQL_DIR)
    args = p.parse_args(list(argv) if argv is not None else None)
    # Imported here so parsing and rendering the schema files never loads the driver.
    from storage.cassandra_session import connect

    settings = replace(
        base,
        backend="cassandra",
        cassandra_hosts=tuple(h.strip() for h in args.hosts.split(",")),
        cassandra_port=args.port,
        cassandra_keyspace=args.keyspace,
        cassandra_replication=args.replication,
    )
    try:
        settings.validate()
        cluster, session = connect(settings)
    except StorageError as exc:
        print(f"migrations: {exc}", file=sys.stderr)
        return 1
    try:
        done = apply_migrations(session, args.keyspace, args.fp_keyspace, args.replication, args.cql_dir)
    except StorageError as exc:
        print(f"migrations: {exc}", file=sys.stderr)
        return 1
    finally:
        cluster.shutdown()
    print(f"schema of {args.keyspace} up to date ({len(done)} file(s) applied now)")
    return 0


def _cassandra_env() -> dict[str, str]:
    """The process environment with the backend forced to cassandra (the runner needs no SQLite path)."""
    return {**os.environ, setting("backend").env: "cassandra"}


if __name__ == "__main__":
    sys.exit(main())
