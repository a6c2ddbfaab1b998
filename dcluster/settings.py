"""DCluster service settings: one dataclass, defaults for a laptop, a YAML file, DCLUSTER_* overrides."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from dcluster.config import ClusterConfig, ConfigError

ENV_PREFIX = "DCLUSTER_"
CONFIG_ENV = "DCLUSTER_CONFIG"
# Service fields the YAML file's `service:` section may set (paths and ports stay deployment-only).
YAML_SERVICE_KEYS = frozenset(
    {
        "max_concurrent_jobs",
        "log_tail_lines",
        "env",
        "job_timeout_s",
        "poll_interval_s",
        "terminate_grace_s",
        "audit_retention_days",
    }
)


def _default_spark_submit() -> str:
    """The spark-submit installed next to the running interpreter (the pyspark wheel ships it)."""
    return str(Path(sys.executable).parent / "spark-submit")


def _default_project_root() -> Path:
    """The checkout that holds jobs/run.py (this package's parent folder)."""
    return Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class DClusterSettings:
    """Everything the service reads from its environment; every field has a DCLUSTER_<NAME> override."""

    host: str = "127.0.0.1"  # interface the HTTP API binds to
    port: int = 8091  # HTTP port of the API
    state_dir: Path = Path("var/dcluster")  # job JSON files (jobs/) and job logs (logs/)
    # Where jobs run: "local" (subprocesses on this host), "standalone" (a Spark standalone cluster) or
    # "aws" (EC2 instances bought per run; needs the config's aws: section, docs/dcluster.md).
    provider: str = "local"
    # Launcher of the local provider. A file named spark-submit* is called as
    # `spark-submit --master M --conf spark.ui.enabled=false run.py app args`; any other
    # launcher (e.g. a python executable) is called as `{launcher} run.py app args`
    # ("python" launcher mode: for Spark-free jobs and fast tests).
    spark_submit: str = field(default_factory=_default_spark_submit)
    spark_master: str = "local[2]"  # --master passed to spark-submit
    spark_master_url: str = (
        "spark://127.0.0.1:7077"  # master of the "standalone" provider (scripts/spark-cluster.sh)
    )
    python: str = field(default_factory=lambda: sys.executable)  # PYSPARK_PYTHON for driver and workers
    # Interpreter of the Flink virtual environment (scripts/flink-env.sh) that runs engine "flink"
    # jobs as `{flink_python} jobs/flink/run.py app args`; empty means
    # {project_root}/.venv-flink/bin/python. Read by the local provider (flink_launcher).
    flink_python: str = ""
    # REST address of the Flink session cluster (scripts/flink-cluster.sh) that the "standalone"
    # provider submits engine "flink" jobs to with `flink run -m`; the local provider ignores it.
    flink_cluster_url: str = "http://127.0.0.1:8094"
    project_root: Path = field(default_factory=_default_project_root)  # folder containing jobs/run.py
    max_concurrent_jobs: int = 2  # jobs RUNNING at once; the rest wait PENDING
    log_tail_lines: int = 50  # lines of the job log kept in the job's log_tail
    env: str = "dev"  # default env of a job spec (part of the namespace s-{env}-{client}-{jobId})
    job_timeout_s: float = 3600.0  # a job running longer is marked HANGING and terminated
    poll_interval_s: float = 1.0  # how often the scheduler starts and polls jobs
    terminate_grace_s: float = 10.0  # SIGTERM to SIGKILL delay when terminating a job
    audit_retention_days: float = (
        365.0  # audit.jsonl entries older than this are dropped (SPEC §8); 0 keeps all
    )
    # Resource policy (pools, strategies, task classes, monitor, prices, simulation, resident
    # session: read by providers/process.py ProcessProvider, which picks the launcher per job); from the
    # YAML file at config_path (DCLUSTER_CONFIG), else the SPEC's example values.
    config_path: Path | None = None
    cluster: ClusterConfig = field(default_factory=ClusterConfig)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> DClusterSettings:
        """Settings from DCLUSTER_* variables (e.g. DCLUSTER_PORT=9000), then explicit overrides."""
        environ = os.environ if environ is None else environ
        base = cls()
        values: dict[str, Any] = {}
        config_path = overrides.get("config_path") or environ.get(CONFIG_ENV) or None
        root = Path(
            str(
                overrides.get("project_root") or environ.get(ENV_PREFIX + "PROJECT_ROOT") or base.project_root
            )
        )
        if config_path is None and (root / DEFAULT_CONFIG).is_file():
            config_path = root / DEFAULT_CONFIG
        if config_path is not None:
            service, cluster = load_config_file(Path(str(config_path)))
            values.update(service)
            values["cluster"] = cluster
            values["config_path"] = Path(str(config_path))
        for f in fields(cls):
            if f.name in ("cluster", "config_path"):
                continue
            raw = environ.get(ENV_PREFIX + f.name.upper())
            if raw is None or raw == "":
                continue
            values[f.name] = _convert(f.name, raw, getattr(base, f.name))
        values.update({k: v for k, v in overrides.items() if v is not None})
        return replace(base, **values).normalized()

    def normalized(self) -> DClusterSettings:
        """A copy with path fields as Path objects and numbers checked."""
        if self.max_concurrent_jobs < 1:
            raise ValueError("DCluster max_concurrent_jobs must be at least 1")
        if self.log_tail_lines < 0:
            raise ValueError("DCluster log_tail_lines must not be negative")
        return replace(
            self,
            state_dir=Path(self.state_dir),
            project_root=Path(self.project_root),
            cluster=self.cluster.checked(),
        )

    @property
    def flink_launcher(self) -> Path:
        """The python that runs Flink jobs: flink_python, else the checkout's .venv-flink."""
        if self.flink_python:
            return Path(self.flink_python)
        return Path(self.project_root) / ".venv-flink" / "bin" / "python"

    @property
    def flink_cli(self) -> Path:
        """PyFlink's `flink` command line (bin/flink of the pyflink package in the Flink venv)."""
        venv = self.flink_launcher.parent.parent
        found = sorted(venv.glob("lib/python3*/site-packages/pyflink/bin/flink"))
        return found[-1] if found else venv / "lib" / "pyflink" / "bin" / "flink"

    @property
    def jobs_dir(self) -> Path:
        """Folder of the per-job JSON state files."""
        return Path(self.state_dir) / "jobs"

    @property
    def logs_dir(self) -> Path:
        """Folder of the per-job log files."""
        return Path(self.state_dir) / "logs"


DEFAULT_CONFIG = Path("config") / "dcluster-config.yaml"


def load_config_file(path: Path) -> tuple[dict[str, Any], ClusterConfig]:
    """The `service:` values and the resource policy of a dcluster-config.yaml file."""
    import yaml

    try:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read DCluster config {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"DCluster config {path} is not valid YAML: {exc}") from exc
    if not isinstance(doc, Mapping):
        raise ConfigError(f"DCluster config {path} must be a mapping")
    doc = dict(doc)
    service = dict(doc.pop("service", None) or {})
    unknown = set(service) - YAML_SERVICE_KEYS
    if unknown:
        raise ConfigError(
            f"{path}: unknown service keys {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(YAML_SERVICE_KEYS))}"
        )
    try:
        cluster = ClusterConfig.from_mapping(doc)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return service, cluster


def _convert(name: str, raw: str, default: object) -> object:
    """Parse one environment value to the type of the field's default."""
    try:
        if isinstance(default, bool):
            return raw.strip().lower() in ("1", "true", "yes", "on")
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
        if isinstance(default, Path) or name == "config_path":
            return Path(raw)
    except ValueError as exc:
        raise ValueError(
            f"{ENV_PREFIX}{name.upper()}={raw!r} is not a valid {type(default).__name__}"
        ) from exc
    return raw
