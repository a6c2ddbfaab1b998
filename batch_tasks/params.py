"""Parameters that refuse bad input with one line a person can act on."""

from __future__ import annotations

import datetime as dt
import sys

import luigi

from fraudcore.clients import ConfigError, get_client, parse_date

# Bad command-line arguments exit like argparse usage errors, before any task is scheduled.
BAD_ARGUMENT_EXIT = 2


def _refuse(message: str) -> None:
    # luigi turns exceptions raised while parsing into a traceback and exit 40; a wrong client
    # or date is a usage error, so say it in one line and stop the way argparse does.
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(BAD_ARGUMENT_EXIT)


class ClientParameter(luigi.Parameter):
    """A client name that exists in the client registry."""

    def parse(self, x: str) -> str:
        from batch_tasks.config import batch_tasks

        try:
            return get_client(x, batch_tasks().registry_path()).name
        except ConfigError as exc:
            _refuse(str(exc))
            raise  # unreachable; keeps type checkers happy

    def normalize(self, x: str) -> str:
        return x.strip() if isinstance(x, str) else x


class DayParameter(luigi.DateParameter):
    """A required YYYY-MM-DD date (never defaults to today: a task must be completable)."""

    def parse(self, s: str) -> dt.date:
        try:
            return parse_date(s)
        except ConfigError as exc:
            _refuse(str(exc))
            raise
