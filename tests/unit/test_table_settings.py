"""Table store settings: each is read from its environment variable and its luigi.cfg key, as declared once."""

from __future__ import annotations

import configparser
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import luigi
import pytest
from luigi.parameter import UnconsumedParameterWarning

from batch_tasks.config import PROJECT_ROOT, tables
from storage.model import BACKENDS, TABLE_SETTINGS, TableStore, TableStoreSettings
from storage.tables import make_table_store
from tests.support import REPO

# Per setting: a text as an operator writes it, and the value it must become; none is the default.
EXAMPLES = {
    "backend": ("cassandra", "cassandra"),
    "sqlite_path": ("/srv/tables/fraud.sqlite", "/srv/tables/fraud.sqlite"),
    "cassandra_hosts": ("10.0.0.1, 10.0.0.2", ("10.0.0.1", "10.0.0.2")),
    "cassandra_port": ("9142", 9142),
    "cassandra_keyspace": ("fraud_prod", "fraud_prod"),
    "cassandra_local_dc": ("dc1", "dc1"),
    "cassandra_username": ("luigi", "luigi"),
    "cassandra_password": ("s3cret", "s3cret"),
    "cassandra_tls_ca_file": ("/etc/fraud/ca.pem", "/etc/fraud/ca.pem"),
    "cassandra_tls_cert_file": ("/etc/fraud/client.pem", "/etc/fraud/client.pem"),
    "cassandra_tls_key_file": ("/etc/fraud/client.key", "/etc/fraud/client.key"),
    "cassandra_replication": ("NetworkTopologyStrategy:dc1=3", "NetworkTopologyStrategy:dc1=3"),
    "cassandra_consistency": ("LOCAL_ONE", "LOCAL_ONE"),
    "cassandra_write_concurrency": ("128", 128),
    "cassandra_write_processes": ("4", 4),
    "cassandra_writer_driver": ("python", "python"),
}


@pytest.fixture(autouse=True)
def _no_table_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for s in TABLE_SETTINGS:
        monkeypatch.delenv(s.env, raising=False)


@contextmanager
def tables_cfg(values: Mapping[str, str]) -> Iterator[None]:
    """luigi's [tables] section holding `values` only, restored afterwards."""
    cfg = luigi.configuration.get_config()
    before = dict(cfg.items("tables", raw=True)) if cfg.has_section("tables") else None
    cfg.remove_section("tables")
    cfg.add_section("tables")
    for key, value in values.items():
        cfg.set("tables", key, value)
    try:
        yield
    finally:
        cfg.remove_section("tables")
        if before is not None:
            cfg.add_section("tables")
            for key, value in before.items():
                cfg.set("tables", key, value)


def test_every_setting_has_an_example_that_differs_from_its_defaults():
    assert set(EXAMPLES) == {s.name for s in TABLE_SETTINGS}
    for s in TABLE_SETTINGS:
        assert EXAMPLES[s.name][1] not in (s.default, s.cfg_default), s.name


def test_each_setting_is_read_from_its_environment_variable():
    env = {s.env: EXAMPLES[s.name][0] for s in TABLE_SETTINGS}
    settings = TableStoreSettings.from_env(environ=env)
    assert {s.name: getattr(settings, s.name) for s in TABLE_SETTINGS} == {
        n: v for n, (_, v) in EXAMPLES.items()
    }


def test_each_setting_with_a_key_is_read_from_luigi_cfg():
    keyed = [s for s in TABLE_SETTINGS if s.cfg]
    with tables_cfg({s.cfg: EXAMPLES[s.name][0] for s in keyed}):
        settings = tables().settings()
    assert {s.name: getattr(settings, s.name) for s in keyed} == {s.name: EXAMPLES[s.name][1] for s in keyed}


def test_the_environment_wins_over_luigi_cfg(monkeypatch):
    monkeypatch.setenv("FRAUDBATCH_CASSANDRA_PORT", "9242")
    with tables_cfg({"backend": "cassandra", "cassandra_port": "9142"}):
        assert tables().settings().cassandra_port == 9242


def test_the_password_never_comes_from_luigi_cfg():
    (password,) = [s for s in TABLE_SETTINGS if s.name == "cassandra_password"]
    assert password.cfg is None and "cassandra_password" not in dict(tables.get_params())
    with (
        tables_cfg(
            {"backend": "cassandra", "cassandra_username": "luigi", "cassandra_password": "in-a-file"}
        ),
        pytest.warns(UnconsumedParameterWarning, match="cassandra_password"),
    ):
        assert tables().settings().cassandra_password == ""


def test_relative_files_in_luigi_cfg_are_taken_from_the_project_root():
    with tables_cfg({"sqlite_path": "var/t.sqlite", "cassandra_tls_ca_file": ""}):
        settings = tables().settings()
    assert (settings.sqlite_path, settings.cassandra_tls_ca_file) == (
        str(PROJECT_ROOT / "var" / "t.sqlite"),
        "",
    )


def test_without_luigi_cfg_the_section_defaults_open_the_project_sqlite_file():
    with tables_cfg({}):
        settings = tables().settings()
    assert settings == TableStoreSettings(
        sqlite_path=str(PROJECT_ROOT / "var" / "tables" / "fraudbatch.sqlite")
    )


def test_the_shipped_luigi_cfg_names_exactly_the_declared_keys():
    shipped = configparser.ConfigParser(interpolation=None)
    shipped.read(REPO / "luigi.cfg")
    assert set(shipped["tables"]) == {s.cfg for s in TABLE_SETTINGS if s.cfg}


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_factory_opens_every_declared_backend(backend, tmp_path):
    store = make_table_store(TableStoreSettings(backend=backend, sqlite_path=str(tmp_path / "t.sqlite")))
    try:
        assert isinstance(store, TableStore)
    finally:
        store.close()
