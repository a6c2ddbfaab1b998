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

    def settings(self):
        """[objectstore] with the FRAUDBATCH_* environment variables winning."""
        from storage.objectstore import ObjectStoreSettings

        defaults = ObjectStoreSettings(
            backend=self.backend,
            root=str(project_path(self.root)),
            endpoint_url=self.endpoint_url or None,
            region=self.region,
            sse=self.sse or None,
            kms_key_id=self.kms_key_id or None,
        )
        return ObjectStoreSettings.from_env(defaults)


class tables(luigi.Config):  # noqa: N801
    """[tables]: DFE rows, results rows and run records.

    One parameter per luigi.cfg key of storage.model.TABLE_SETTINGS, where each key is declared
    and documented once (added below the class); the password has no key
    (FRAUDBATCH_CASSANDRA_PASSWORD only).
    """

    def settings(self):
        """[tables] with the FRAUDBATCH_* environment variables winning; relative files from the project root."""
        from storage.model import TABLE_SETTINGS, TableStoreSettings

        values = {s.cfg: getattr(self, s.cfg) for s in TABLE_SETTINGS if s.cfg}
        return TableStoreSettings.from_env(
            TableStoreSettings.from_cfg(values, lambda p: str(project_path(p)))
        )

    def store(self):
        """The configured table store; FRAUDBATCH_* environment variables win."""
        from storage.tables import make_table_store

        return make_table_store(self.settings())


def _declare_table_parameters() -> None:
    # luigi finds a Config's parameters on the class when it reads them, so they can be added
    # after the class statement (with the __set_name__ call the class statement would make).
    from storage.model import TABLE_SETTINGS

    for s in TABLE_SETTINGS:
        if s.cfg:
            kind = luigi.IntParameter if s.kind is int else luigi.Parameter
            param = kind(default=s.cfg_text, description=s.doc)
            param.__set_name__(tables, s.cfg)
            setattr(tables, s.cfg, param)


_declare_table_parameters()


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


def settings():
    """The pipeline's Settings from [batch_tasks], [objectstore] and [tables]; environment variables win."""
    from pipeline.day import Settings

    return Settings(
        warehouse=batch_tasks().warehouse_path(),
        objectstore=objectstore().settings(),
        open_tables=_open_table_store,
        registry=batch_tasks().registry_path(),
    )


def _open_table_store():
    # A module function, not a bound method, so Settings pickles by reference along with luigi's tasks.
    return tables().store()
