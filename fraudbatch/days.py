"""Which client-day "today" and "yesterday" are for a client: dates on the client's own calendar.

    fraudbatch day --client C today|yesterday|today-N [--now 2025-11-22T02:00:00Z]

The cron wrappers (scripts/lib.sh for_clients) ask this for every client, so a New York client
at 02:00 UTC still works on its own evening's day, not on tomorrow's.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
from typing import Any

from fraudcore.clients import ClientConfig, ConfigError, get_client

_WHICH_RE = re.compile(r"^(?:today|yesterday|today-(\d{1,4}))$")


def days_back(which: str) -> int:
    """Days before the client's today that `which` (today, yesterday or today-N) names."""
    m = _WHICH_RE.match(which or "")
    if not m:
        raise ConfigError(f"invalid day {which!r}: expected today, yesterday or today-N")
    if which == "yesterday":
        return 1
    return int(m.group(1) or 0)


def client_day(client: ClientConfig, which: str, now: dt.datetime) -> dt.date:
    """The client-local date that `which` (today, yesterday or today-N) is at the aware instant `now`."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    return client.local_date(now) - dt.timedelta(days=days_back(which))


def parse_now(text: str) -> dt.datetime:
    """An ISO-8601 instant with an offset or Z."""
    try:
        now = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"invalid --now {text!r}: expected an ISO-8601 instant such as 2025-11-22T02:00:00Z"
        ) from None
    if now.tzinfo is None:
        raise ConfigError(f"invalid --now {text!r}: give its offset (Z or +HH:MM)")
    return now


def cmd_day(args: argparse.Namespace) -> int:
    now = parse_now(args.now) if args.now else dt.datetime.now(dt.UTC)
    print(client_day(get_client(args.client), args.which, now).isoformat())
    return 0


def add_parser(sub: Any) -> None:
    """Register `day` on the fraudbatch command line."""
    d = sub.add_parser(
        "day",
        help="print a client's today / yesterday (YYYY-MM-DD) in its timezone",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d.add_argument("--client", required=True)
    d.add_argument("--now", help="the instant to use instead of the clock (ISO-8601 with offset)")
    d.add_argument("which", help="today, yesterday or today-N")
    d.set_defaults(func=cmd_day)
