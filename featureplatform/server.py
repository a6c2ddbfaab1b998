"""Command line entry point `fp-server`: run the Feature Platform with uvicorn."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from featureplatform.settings import FPSettings


def build_parser() -> argparse.ArgumentParser:
    """Arguments of `fp-server`; each overrides the matching FP_* environment variable."""
    parser = argparse.ArgumentParser(prog="fp-server", description="Run the Feature Platform service.")
    parser.add_argument("--host", help="bind address (FP_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="TCP port (FP_PORT, default 8092)")
    parser.add_argument(
        "--db", type=Path, help="SQLite feature store file (FP_DB_PATH, default var/fp/features.sqlite)"
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, build settings and serve until interrupted; returns the exit code."""
    import uvicorn

    from featureplatform.api import create_app

    args = build_parser().parse_args(argv)
    settings = FPSettings.from_env(host=args.host, port=args.port, db_path=args.db)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=args.log_level)
    return 0
