"""`dcluster-server`: run the DCluster API with uvicorn."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from dcluster.config import ConfigError
from dcluster.settings import DClusterSettings


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options; each overrides its DCLUSTER_* variable."""
    p = argparse.ArgumentParser(prog="dcluster-server", description="Run the DCluster job service.")
    p.add_argument("--host", default=None, help="bind address (DCLUSTER_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (DCLUSTER_PORT, default 8091)")
    p.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="job state and logs (DCLUSTER_STATE_DIR, default var/dcluster)",
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGINT/SIGTERM; uvicorn's shutdown runs the app's lifespan, which stops running jobs."""
    import uvicorn

    from dcluster.api import create_app

    args = parse_args(argv)
    try:
        settings = DClusterSettings.from_env(host=args.host, port=args.port, state_dir=args.state_dir)
        app = create_app(settings)
    except ConfigError as exc:
        # One line that names the key to fix, not a traceback.
        print(f"dcluster-server: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("dcluster").info(
        "DCluster on http://%s:%d (provider %s, state %s, launcher %s)",
        settings.host,
        settings.port,
        settings.provider,
        settings.state_dir.resolve(),
        settings.spark_submit,
    )
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=args.log_level)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
