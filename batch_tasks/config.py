"""luigi.cfg sections, read through luigi.Config (never at import time)."""
from __future__ import annotations

import os
from pathlib import Path

import luigi

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def project_path(value: str) -> Path:
    """A configured path, relative paths taken from the project root."""
    p = Path(value)
    return p if p.is_absolute() else PROJECT_ROOT / p


class batch_tasks(luigi.Config):  # noqa: N801 - section name in luigi.cfg
    """[batch_tasks]: pipeline-wide settings."""

    timeout = luigi.IntParameter(default=3600, description="seconds a task waits for its DCluster job")
    warehouse = luigi.Parameter(default="var/warehouse", description="stage data root")
    registry = luigi.Parameter(default="", description="client registry YAML; empty = config/clients.yaml")
    env = luigi.Parameter(default="dev", description="environment name in job namespaces")
    poll_interval = luigi.FloatParameter(default=2.0, description="seconds between job status polls")

    def warehouse_path(self) -> Path:
        return project_path(os.environ.get("FRAUDBATCH_WAREHOUSE") or self.warehouse)

    def registry_path(self) -> str | None:
        value = os.environ.get("FRAUDBATCH_CLIENTS") or self.registry
        return str(project_path(value)) if value else None


class objectstore(luigi.Config):  # noqa: N801
    """[objectstore]: where client raw data and results live."""

    backend = luigi.Parameter(default="local")
    root = luigi.Parameter(default="var/objectstore")
    endpoint_url = luigi.Parameter(default="")
    region = luigi.Parameter(default="us-east-1")
    sse = luigi.Parameter(default="")
    kms_key_id = luigi.Parameter(default="")

    def store(self):
        """The configured object store; FRAUDBATCH_* environment variables win."""
        from storage.objectstore import ObjectStoreSettings, make_object_store

        defaults = ObjectStoreSettings(
            backend=self.backend, root=str(project_path(self.root)),
            endpoint_url=self.endpoint_url or None, region=self.region,
            sse=self.sse or None, kms_key_id=self.kms_key_id or None,
        )
        return make_object_store(ObjectStoreSettings.from_env(defaults))


class tables(luigi.Config):  # noqa: N801
    """[tables]: DFE rows, results rows and run records."""

    backend = luigi.Parameter(default="sqlite")
    sqlite_path = luigi.Parameter(default="var/tables/fraudbatch.sqlite")
    cassandra_hosts = luigi.Parameter(default="127.0.0.1", description="comma-separated contact points")
    cassandra_port = luigi.IntParameter(default=9042)
    cassandra_keyspace = luigi.Parameter(default="fraud")
    cassandra_local_dc = luigi.Parameter(default="datacenter1")
    cassandra_username = luigi.Parameter(default="")
    cassandra_tls_ca_file = luigi.Parameter(default="", description="PEM CA; set, the driver speaks TLS")
    cassandra_tls_cert_file = luigi.Parameter(default="")
    cassandra_tls_key_file = luigi.Parameter(default="")
    cassandra_replication = luigi.Parameter(default="SimpleStrategy:1")
    cassandra_consistency = luigi.Parameter(default="LOCAL_QUORUM")
    cassandra_write_concurrency = luigi.IntParameter(default=96)
    cassandra_write_processes = luigi.IntParameter(default=2)
    cassandra_writer_driver = luigi.Parameter(default="native", description="native (C++ driver) or python")

    def store(self):
        """The configured table store; FRAUDBATCH_* environment variables win."""
        from storage.tables import TableStoreSettings, make_table_store

        # The password never comes from luigi.cfg: FRAUDBATCH_CASSANDRA_PASSWORD only.
        defaults = TableStoreSettings(
            backend=self.backend, sqlite_path=str(project_path(self.sqlite_path)),
            cassandra_hosts=tuple(h.strip() for h in self.cassandra_hosts.split(",") if h.strip()),
            cassandra_port=self.cassandra_port, cassandra_keyspace=self.cassandra_keyspace,
            cassandra_local_dc=self.cassandra_local_dc, cassandra_username=self.cassandra_username,
            cassandra_tls_ca_file=str(project_path(self.cassandra_tls_ca_file)) if self.cassandra_tls_ca_file else "",
            cassandra_tls_cert_file=str(project_path(self.cassandra_tls_cert_file)) if self.cassandra_tls_cert_file else "",
            cassandra_tls_key_file=str(project_path(self.cassandra_tls_key_file)) if self.cassandra_tls_key_file else "",
            cassandra_replication=self.cassandra_replication, cassandra_consistency=self.cassandra_consistency,
            cassandra_write_concurrency=self.cassandra_write_concurrency,
            cassandra_write_processes=self.cassandra_write_processes,
            cassandra_writer_driver=self.cassandra_writer_driver,
        )
        return make_table_store(TableStoreSettings.from_env(defaults))


class dcluster(luigi.Config):  # noqa: N801
    """[dcluster]: the job service."""

    url = luigi.Parameter(default="http://127.0.0.1:8091")

    def client(self):
        from dcluster_client.client import DClusterClient

        return DClusterClient(os.environ.get("DCLUSTER_URL") or self.url)


class fp(luigi.Config):  # noqa: N801
    """[fp]: the Feature Platform."""

    url = luigi.Parameter(default="http://127.0.0.1:8092")
    batch_size = luigi.IntParameter(default=10000)
    realtime_window_minutes = luigi.IntParameter(default=60)

    def client(self):
        from fp_ferry.client import FPClient

        return FPClient(os.environ.get("FP_URL") or self.url)
