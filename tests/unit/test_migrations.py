"""The migration runner and the Cassandra settings, without a node: parsing, rendering, records, validation."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from storage.errors import StorageConfigError
from storage.migrations import (
    CQL_DIR,
    MigrationError,
    apply_migrations,
    load_migrations,
    render_statements,
    split_statements,
)
from storage.model import TableStoreSettings, check_identifier, parse_replication

VALUES = {
    "keyspace": "fraud",
    "fp_keyspace": "fp_features",
    "replication": "{'class': 'SimpleStrategy', 'replication_factor': 1}",
}


def test_statements_split_outside_quotes_and_comments():
    text = """
    -- a comment; with a semicolon and 'a quote
    CREATE TABLE a (k TEXT PRIMARY KEY) WITH comment = 'x; -- not a comment ''quoted''';  // trailing
    /* block; comment */ INSERT INTO "we;ird" (k) VALUES ('$$;');
    CREATE FUNCTION f() RETURNS NULL ON NULL INPUT RETURNS int LANGUAGE java AS $$ return 1; $$;
    """
    assert split_statements(text) == [
        "CREATE TABLE a (k TEXT PRIMARY KEY) WITH comment = 'x; -- not a comment ''quoted'''",
        "INSERT INTO \"we;ird\" (k) VALUES ('$$;')",
        "CREATE FUNCTION f() RETURNS NULL ON NULL INPUT RETURNS int LANGUAGE java AS $$ return 1; $$",
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("CREATE TABLE a (k TEXT PRIMARY KEY)", "without a closing ';'"),
        ("INSERT INTO a (k) VALUES ('open);", "unterminated ' quote"),
        ("/* never closed ; ", "unterminated /\\* comment"),
    ],
)
def test_malformed_files_are_refused(text, message):
    with pytest.raises(MigrationError, match=message):
        split_statements(text)


def test_placeholders_are_replaced_outside_string_literals_only():
    text = "CREATE TABLE ${keyspace}.t (k TEXT PRIMARY KEY) WITH comment = 'about ${keyspace}';"
    assert render_statements(text, VALUES) == [
        "CREATE TABLE fraud.t (k TEXT PRIMARY KEY) WITH comment = 'about ${keyspace}'"
    ]
    with pytest.raises(MigrationError, match=r"unknown placeholder \$\{nope\}"):
        render_statements("SELECT * FROM ${nope}.t;", VALUES)


def test_the_project_schema_renders_the_spec_tables():
    migrations = load_migrations()
    assert [m.version for m in migrations] == [1, 2, 3, 4]
    rendered = [s for m in migrations for s in render_statements(m.text, VALUES)]
    assert all("${" not in s for s in rendered)
    squashed = [" ".join(s.split()) for s in rendered]
    assert (
        "CREATE TABLE IF NOT EXISTS fraud.dfe_data ( client_id TEXT, user_id TEXT, timestamp TIMESTAMP, "
        "feature_vector MAP<TEXT, DOUBLE>, PRIMARY KEY ((client_id, user_id), timestamp) ) "
        "WITH CLUSTERING ORDER BY (timestamp DESC)"
    ) in squashed
    assert (
        "CREATE TABLE IF NOT EXISTS fraud.results ( client_id TEXT, job_id TEXT, result_type TEXT, "
        "result_data TEXT, created_at TIMESTAMP, PRIMARY KEY ((client_id, job_id), result_type) )"
    ) in squashed
    assert all(s.startswith("CREATE ") and " IF NOT EXISTS " in s for s in squashed)


@pytest.mark.parametrize(
    ("spec", "cql"),
    [
        ("SimpleStrategy:1", "{'class': 'SimpleStrategy', 'replication_factor': 1}"),
        (
            "NetworkTopologyStrategy:dc1=3,eu-west.2=2",
            "{'class': 'NetworkTopologyStrategy', 'dc1': 3, 'eu-west.2': 2}",
        ),
    ],
)
def test_replication_renders_from_validated_parts(spec, cql):
    assert parse_replication(spec).cql() == cql


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "SimpleStrategy",
        "SimpleStrategy:0",
        "SimpleStrategy:x",
        "LocalStrategy:1",
        "SimpleStrategy:1}; DROP KEYSPACE fraud; --",
        "NetworkTopologyStrategy:dc1'=3",
        "NetworkTopologyStrategy:dc1=3,dc1=2",
        "NetworkTopologyStrategy:",
    ],
)
def test_bad_replication_is_refused(spec):
    with pytest.raises(StorageConfigError, match="replication"):
        parse_replication(spec)


@pytest.mark.parametrize("name", ["Fraud", "fraud;drop", "1fraud", "", "a" * 49, 'fraud"'])
def test_bad_keyspace_names_are_refused(name):
    with pytest.raises(StorageConfigError, match="invalid keyspace name"):
        check_identifier(name)


def _copy_schema(tmp_path: Path) -> Path:
    for f in CQL_DIR.glob("*.cql"):
        (tmp_path / f.name).write_text(f.read_text(encoding="utf-8"), encoding="utf-8")
    return tmp_path


def test_gaps_and_badly_named_files_are_refused(tmp_path):
    _copy_schema(tmp_path)
    (tmp_path / "006_later.cql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="without gaps"):
        load_migrations(tmp_path)
    (tmp_path / "006_later.cql").unlink()
    (tmp_path / "5_bad.cql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="NNN_name.cql"):
        load_migrations(tmp_path)


class RecordingSession:
    """Stands in for a driver session: keeps executed CQL and the schema_migrations rows in memory."""

    def __init__(self) -> None:
        self.executed: list[str] = []
        self.records: dict[int, tuple[str, str]] = {}

    def prepare(self, cql: str) -> str:
        return cql

    def execute(self, stmt: str, params: tuple | None = None):
        if params is not None:
            version, name, checksum, _ = params
            self.records[version] = (name, checksum)
            return []
        self.executed.append(stmt)
        if stmt.startswith("SELECT version"):
            Row = dataclasses.make_dataclass("Row", ["version", "name", "checksum"])
            return [Row(v, n, c) for v, (n, c) in self.records.items()]
        return []


def test_runner_applies_once_records_checksums_and_refuses_a_changed_file(tmp_path):
    cql = _copy_schema(tmp_path)
    session = RecordingSession()
    assert apply_migrations(
        session, "fraud_x", "fp_x", "NetworkTopologyStrategy:dc1=3", cql, log=lambda _: None
    ) == [1, 2, 3, 4]
    assert (
        "CREATE KEYSPACE IF NOT EXISTS fraud_x WITH replication = "
        "{'class': 'NetworkTopologyStrategy', 'dc1': 3}" in session.executed
    )
    assert any(s.startswith("CREATE TABLE IF NOT EXISTS fraud_x.dfe_data") for s in session.executed)
    assert sorted(session.records) == [1, 2, 3, 4]
    ran = len(session.executed)
    assert apply_migrations(session, "fraud_x", "fp_x", "SimpleStrategy:1", cql, log=lambda _: None) == []
    assert not any(
        s.startswith("CREATE TABLE IF NOT EXISTS fraud_x.dfe_data") for s in session.executed[ran:]
    )
    target = cql / "003_platform_tables.cql"
    target.write_text(target.read_text() + "\n-- tweak\n")
    with pytest.raises(
        MigrationError,
        match="003_platform_tables.cql was changed after it was applied .* "
        "put the change in a new file numbered 005",
    ):
        apply_migrations(session, "fraud_x", "fp_x", "SimpleStrategy:1", cql, log=lambda _: None)


def test_runner_refuses_a_schema_newer_than_the_checkout(tmp_path):
    cql = _copy_schema(tmp_path)
    session = RecordingSession()
    session.records[9] = ("future", "abc")
    with pytest.raises(MigrationError, match=r"records applied versions \[9\]"):
        apply_migrations(session, "fraud", "fp_features", "SimpleStrategy:1", cql, log=lambda _: None)


def test_cassandra_settings_from_env():
    env = {
        "FRAUDBATCH_TABLES_BACKEND": "cassandra",
        "FRAUDBATCH_CASSANDRA_HOSTS": "10.0.0.1, 10.0.0.2",
        "FRAUDBATCH_CASSANDRA_PORT": "9142",
        "FRAUDBATCH_CASSANDRA_KEYSPACE": "fraud_prod",
        "FRAUDBATCH_CASSANDRA_LOCAL_DC": "dc1",
        "FRAUDBATCH_CASSANDRA_USERNAME": "luigi",
        "FRAUDBATCH_CASSANDRA_PASSWORD": "s3cret",
        "FRAUDBATCH_CASSANDRA_TLS_CA_FILE": "/etc/ca.pem",
        "FRAUDBATCH_CASSANDRA_REPLICATION": "NetworkTopologyStrategy:dc1=3",
        "FRAUDBATCH_CASSANDRA_CONSISTENCY": "local_one",
        "FRAUDBATCH_CASSANDRA_WRITE_CONCURRENCY": "128",
        "FRAUDBATCH_CASSANDRA_WRITE_PROCESSES": "4",
    }
    s = TableStoreSettings.from_env({"sqlite_path": "/x.sqlite", "cassandra_port": 1}, environ=env)
    assert (s.backend, s.cassandra_hosts, s.cassandra_port, s.cassandra_keyspace) == (
        "cassandra",
        ("10.0.0.1", "10.0.0.2"),
        9142,
        "fraud_prod",
    )
    assert (s.cassandra_local_dc, s.cassandra_username, s.cassandra_password, s.cassandra_tls_ca_file) == (
        "dc1",
        "luigi",
        "s3cret",
        "/etc/ca.pem",
    )
    assert (s.cassandra_replication, s.cassandra_consistency) == (
        "NetworkTopologyStrategy:dc1=3",
        "local_one",
    )
    assert (s.cassandra_write_concurrency, s.cassandra_write_processes) == (128, 4)
    defaults = TableStoreSettings.from_env(environ={"FRAUDBATCH_TABLES_BACKEND": "cassandra"})
    assert (defaults.cassandra_hosts, defaults.cassandra_port, defaults.cassandra_keyspace) == (
        ("127.0.0.1",),
        9042,
        "fraud",
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FRAUDBATCH_CASSANDRA_PORT": "ninety"}, "FRAUDBATCH_CASSANDRA_PORT must be a whole number"),
        ({"FRAUDBATCH_CASSANDRA_PORT": "70000"}, "invalid Cassandra port"),
        ({"FRAUDBATCH_CASSANDRA_KEYSPACE": "fraud; DROP"}, "invalid keyspace name"),
        ({"FRAUDBATCH_CASSANDRA_CONSISTENCY": "MOST"}, "unknown consistency 'MOST'"),
        ({"FRAUDBATCH_CASSANDRA_REPLICATION": "SimpleStrategy:one"}, "invalid replication"),
        ({"FRAUDBATCH_CASSANDRA_WRITE_PROCESSES": "0"}, "must be at least 1"),
        ({"FRAUDBATCH_CASSANDRA_TLS_CERT_FILE": "/c.pem"}, "needs its key"),
        ({"FRAUDBATCH_CASSANDRA_PASSWORD": "pw"}, "needs a user"),
    ],
)
def test_invalid_cassandra_settings_name_what_to_fix(env, message):
    with pytest.raises(StorageConfigError, match=message):
        TableStoreSettings.from_env(environ={"FRAUDBATCH_TABLES_BACKEND": "cassandra", **env})


def test_sqlite_stays_the_default_backend():
    assert TableStoreSettings().backend == "sqlite"
