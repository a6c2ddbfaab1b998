"""Sample client-day raw input with planted fraud rings, and the ground truth that grades the pipeline.

`generate_client_day` writes the raw-input contract of DESIGN.md,
``{out_dir}/rawdata/{client}/{date}/{logs,events,transactions}/part-NNNN.{jsonl,jsonl.gz,csv,csv.gz}``
plus ``labels/labels.csv``, and the answer key ``{truth_dir}/{client}/{date}/truth.json`` outside
the client's data.

What counts as one record read -- the unit of ``records`` in the report and in truth.json:
  * a JSONL file (``.jsonl``, ``.jsonl.gz``): one line of the decompressed text. The generator
    never writes blank lines, so every line is a record;
  * a CSV file (``.csv``, ``.csv.gz``): one data row after the header row. No field contains a
    line break, so one row is one physical line.
Line numbers in truth.json are 1-based physical lines of the decompressed file (a CSV header
is line 1, its first data row line 2).

A record is malformed -- a strict reader must quarantine it -- for exactly one of these kinds:
  * ``invalid_json``: a JSONL line that does not parse (a truncated object);
  * ``missing_user_id``: the user field is absent (JSONL) or empty (CSV);
  * ``bad_event_time``: the time field is absent/empty or an unparseable string;
  * ``bad_amount``: a transaction whose amount is a non-numeric string;
  * ``csv_column_count``: a CSV row with one column too few or too many.
Every other record is valid: user, time and event type present, the time an ISO-8601 string
with ``Z`` or an offset, or integer epoch seconds or milliseconds, a transaction's amount a
number. So records read = valid + malformed, always.

Valid records include exact duplicates (same event_id, maybe in another file and format),
records without event_id (never two such records of one user, type and second, so derived ids
stay distinct) and late records from the evening before the client-day. Records use the
client's own field names (``field_map`` applied in reverse). Output is a pure function of the
arguments: one seeded ``random.Random``, sorted JSON keys, gzip with mtime 0.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import json
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fraudcore import atomic
from fraudcore.clients import ClientConfig

FOLDERS = ("logs", "events", "transactions")
FORMATS = ("jsonl", "jsonl.gz", "csv", "csv.gz")
FOLDER_OF = {
    "login": "logs",
    "login_failed": "logs",
    "logout": "logs",
    "page_view": "logs",
    "signup": "events",
    "password_change": "events",
    "transaction": "transactions",
}
RING_SHAPES = ("shared_device", "shared_fingerprint_block", "chain", "signup_burst", "velocity")
MALFORMED_KINDS = ("invalid_json", "missing_user_id", "bad_event_time", "bad_amount", "csv_column_count")
MIN_EVENTS = 1000
DUPLICATE_RATE = 0.003
LATE_RATE = 0.002
MISSING_ID_RATE = 0.03
LABEL_SHARE = 0.30

# Canonical columns per folder, in CSV header order (renamed through the client's field_map).
_BASE_COLUMNS = (
    "user_id",
    "event_time",
    "event_type",
    "event_id",
    "ip",
    "device_id",
    "browser_fingerprint",
    "user_agent",
    "email_domain",
    "phone",
    "country",
)
_COLUMNS = {
    "logs": _BASE_COLUMNS,
    "events": _BASE_COLUMNS,
    "transactions": _BASE_COLUMNS + ("amount", "currency", "merchant_id"),
}

_UA = {
    "phone": (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.5 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Mobile Safari/537.36",
        "Mozilla/5.0 (Linux; Android 13; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/123.0.0.0 Mobile Safari/537.36",
        "FraudBankApp/5.2.1 (iOS 17.4; iPhone14,2)",
    ),
    "desktop": (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.4 Safari/605.1.15",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36",
    ),
    "tablet": (
        "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.4 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/123.0.0.0 Safari/537.36",
    ),
}
_COUNTRIES = (
    ("US", "USD", 70),
    ("CA", "CAD", 8),
    ("GB", "GBP", 8),
    ("DE", "EUR", 6),
    ("MX", "MXN", 4),
    ("IN", "INR", 4),
)
_EMAIL_DOMAINS = (
    "gmail.com",
    "yahoo.com",
    "outlook.com",
    "icloud.com",
    "hotmail.com",
    "aol.com",
    "proton.me",
    "comcast.net",
)
_DISPOSABLE_DOMAINS = ("mailinator.com", "tempmail.dev", "guerrillamail.net", "trashmail.io", "fakeinbox.org")
# First octets of residential, carrier and hosting space; kept disjoint so a planted /24 never
# collides with an innocent home address by chance.
_HOME_OCTETS = (24, 50, 67, 68, 71, 73, 76, 98, 99, 108)
_CARRIER_PREFIXES = ("172.56", "172.58", "107.77", "166.205")
_RING_OCTETS = (45, 91, 185, 193)
# Relative session starts per local hour: quiet nights, busy evenings.
_HOUR_WEIGHTS = (2, 1, 1, 1, 1, 2, 4, 7, 9, 10, 10, 10, 11, 10, 10, 10, 10, 11, 12, 13, 12, 10, 7, 4)
_OFFSETS_MIN = (-300, 60, 330, -480)
_BAD_TIMES = ("not-a-time", "2025-13-45T99:99:99Z", "yesterday 10am", "21/11/2025 10:61", "")
_BAD_AMOUNTS = ("twelve", "12.50.1", "USD", "1,2,3", "--")
_MS_HOUR = 3_600_000

Ctx = tuple[str, str, str, str, str]  # ip, device_id, browser_fingerprint, user_agent, country
Progress = Callable[[int], object]


@dataclass
class GenerationReport:
    """What one generated client-day holds; the same numbers as truth.json."""

    client: str
    date: str
    root: Path
    truth_path: Path
    files: list[Path]
    records: int
    valid_records: int
    malformed: int
    malformed_by_kind: dict[str, int]
    duplicates: int
    late: int
    missing_event_id: int
    users: int
    rings: int
    ring_members: int
    households: int
    carrier_users: int
    carrier_ips: int
    labels: int
    seconds: float = 0.0
    by_source: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        """One paragraph describing the generated day, for people."""
        kinds = ", ".join(f"{k} {n}" for k, n in self.malformed_by_kind.items() if n) or "none"
        return (
            f"Generated {self.records:,} records for {self.client} {self.date} in {self.seconds:.1f} s "
            f"into {self.root}: {len(self.files)} files "
            f"(logs {self.by_source.get('logs', 0):,}, events {self.by_source.get('events', 0):,}, "
            f"transactions {self.by_source.get('transactions', 0):,} records); "
            f"{self.valid_records:,} valid including {self.duplicates:,} duplicates, {self.late:,} late "
            f"and {self.missing_event_id:,} without event_id; {self.users:,} users "
            f"({self.carrier_users:,} behind {self.carrier_ips} carrier NAT IPs, {self.households} household(s)), "
            f"{self.rings} fraud rings with {self.ring_members} members; {self.malformed:,} malformed ({kinds}); "
            f"{self.labels:,} labels; ground truth in {self.truth_path}."
        )


@dataclass
class _User:
    uid: str
    country: str
    currency: str
    email_domain: str
    phone: str
    ctxs: list[Ctx] = field(default_factory=list)
    ctx_weights: list[float] = field(default_factory=list)
    tx_rate: float = 0.25


class _Day:
    """Mutable state of one generation: the population and every logical event, in emit order."""

    def __init__(self, client: ClientConfig, day: dt.date, seed: int) -> None:
        self.rng = random.Random(f"fraudbatch-datagen|{seed}|{client.name}|{day.isoformat()}")
        self.start, self.end = client.day_window_ms(day)
        self.length = self.end - self.start
        self.users: list[_User] = []
        # One event: [event_time_ms, user index, event_type, ctx, extra]; extra is None,
        # (email_domain, phone) or (amount, currency, merchant_id).
        self.events: list[list] = []
        self.protected: set[int] = set()  # event indexes that must stay valid and in-window
        self._uids_used: set[int] = set()
        self._hour_cum = _cumulative(_HOUR_WEIGHTS)
        self._country_cum = _cumulative([w for _, _, w in _COUNTRIES])

    # ----- population
    def new_user(self, country: tuple[str, str] | None = None, email_domain: str | None = None) -> int:
        rng = self.rng
        if country is None:
            c = _COUNTRIES[_pick(rng, self._country_cum)]
            country = (c[0], c[1])
        user = _User(
            uid=self._new_uid(),
            country=country[0],
            currency=country[1],
            email_domain=email_domain or rng.choice(_EMAIL_DOMAINS),
            phone=f"+1{rng.randrange(200, 999)}{rng.randrange(10**6, 10**7)}",
        )
        self.users.append(user)
        return len(self.users) - 1

    def _new_uid(self) -> str:
        while True:
            n = self.rng.randrange(1, 10_000_000)
            if n not in self._uids_used:
                self._uids_used.add(n)
                return f"u{n:07d}"

    def device(self, kind: str, ip: str, country: str) -> Ctx:
        rng = self.rng
        return (
            ip,
            f"dev-{rng.getrandbits(64):016x}",
            f"fp-{rng.getrandbits(64):016x}",
            rng.choice(_UA[kind]),
            country,
        )

    def home_ip(self) -> str:
        rng = self.rng
        return f"{rng.choice(_HOME_OCTETS)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"

    def offset(self) -> int:
        """A session start within the day, in ms from its beginning, weighted to waking hours."""
        hour = _pick(self.rng, self._hour_cum)
        return (hour * _MS_HOUR + self.rng.randrange(_MS_HOUR)) % self.length

    # ----- events
    def emit(self, t: int, user: int, event_type: str, ctx: Ctx, extra: tuple | None = None) -> None:
        self.events.append([t, user, event_type, ctx, extra])


def _cumulative(weights) -> list[float]:
    out, total = [], 0.0
    for w in weights:
        total += w
        out.append(total)
    return out


def _pick(rng: random.Random, cum: list[float]) -> int:
    x = rng.random() * cum[-1]
    for i, c in enumerate(cum):
        if x < c:
            return i
    return len(cum) - 1


# --------------------------------------------------------------------------------------------
# Population planning


def _plan_sizes(events: int) -> tuple[int, int]:
    """(total users, ring-member budget) for a day of `events` records."""
    users = max(60, events // 40)
    return users, max(25, round(users * 0.03))


def _legit_population(d: _Day, n_legit: int) -> dict:
    """Create the legitimate users: home users, carrier-NAT users and households; return their truth."""
    rng = d.rng
    n_carrier = round(n_legit * 0.35)
    n_household_users = max(4, round(n_legit * 0.10))
    n_home = n_legit - n_carrier - n_household_users
    if n_home < 1:
        raise ValueError(f"too few events for a population; use at least {MIN_EVENTS}")

    # Carrier NAT: many phones behind a few shared addresses, so each address becomes a super-node.
    n_ips = max(2, n_carrier // 90)
    chosen: set[str] = set()
    while len(chosen) < n_ips:
        chosen.add(f"{rng.choice(_CARRIER_PREFIXES)}.{rng.randrange(256)}.{rng.randrange(1, 255)}")
    carrier_ips = sorted(chosen)
    carrier_users: list[int] = []
    for k in range(n_carrier):
        u = d.new_user()
        user = d.users[u]
        primary = carrier_ips[k % n_ips]  # round-robin keeps every address well above the threshold
        secondary = carrier_ips[(k + 1 + rng.randrange(n_ips - 1)) % n_ips]
        phone = d.device("phone", primary, user.country)
        user.ctxs = [phone, (secondary,) + phone[1:]]
        user.ctx_weights = [0.75, 0.25]
        user.tx_rate = 0.2
        carrier_users.append(u)

    for _ in range(n_home):
        u = d.new_user()
        user = d.users[u]
        ip = d.home_ip()
        kinds = ["desktop"] if rng.random() < 0.5 else ["phone"]
        if rng.random() < 0.35:
            kinds.append("phone" if kinds[0] == "desktop" else "desktop")
        user.ctxs = [d.device(k, ip, user.country) for k in kinds]
        user.ctx_weights = [0.7, 0.3][: len(kinds)] if len(kinds) > 1 else [1.0]
        user.tx_rate = rng.uniform(0.15, 0.45)

    households = []
    left = n_household_users
    while left >= 2:
        size = min(left, rng.randint(2, 4))
        if left - size == 1:  # never leave a household of one
            size = size + 1 if size < 4 else size - 1
        left -= size
        ip = d.home_ip()
        country = _COUNTRIES[_pick(rng, d._country_cum)]
        tablet = d.device("tablet", ip, country[0])
        members = []
        for _ in range(size):
            u = d.new_user(country=(country[0], country[1]))
            user = d.users[u]
            # The tablet comes first: the first session of every member is on it.
            user.ctxs = [tablet, d.device("phone", ip, country[0])]
            user.ctx_weights = [0.4, 0.6]
            user.tx_rate = rng.uniform(0.1, 0.3)
            members.append(u)
        households.append(
            {"members": members, "device_id": tablet[1], "ip": ip, "browser_fingerprint": tablet[2]}
        )
    return {"carrier_ips": carrier_ips, "carrier_users": carrier_users, "households": households}


def _legit_activity(d: _Day, legit: list[int], budget: int) -> None:
    """Exactly `budget` events of ordinary sessions spread over the legitimate users."""
    rng = d.rng
    n = len(legit)
    if budget < 3 * n:
        raise ValueError(f"too few events for the population; use at least {MIN_EVENTS}")
    weights = [rng.lognormvariate(0.0, 0.8) for _ in range(n)]
    total_w = sum(weights)
    spare = budget - 3 * n
    targets = [3 + int(spare * w / total_w) for w in weights]
    left = budget - sum(targets)
    for i in rng.sample(range(n), n)[:left]:
        targets[i] += 1
    emit = d.emit
    for u, target in zip(legit, targets, strict=True):
        user = d.users[u]
        made = 0
        first = True
        while made < target:
            if first:
                ctx = user.ctxs[0]
            elif len(user.ctxs) == 1:
                ctx = user.ctxs[0]
            else:
                ctx = rng.choices(user.ctxs, user.ctx_weights)[0]
            t = d.start + d.offset()
            steps: list[tuple[str, tuple | None]] = []
            if rng.random() < 0.06:
                steps.append(("login_failed", None))
            steps.append(("login", None))
            steps.extend(("page_view", None) for _ in range(rng.randint(1, 4)))
            while rng.random() < user.tx_rate:
                amount = max(1.0, round(rng.lognormvariate(3.3, 1.1), 2))
                merchant = f"m-{min(int(rng.expovariate(1 / 150)), 1999):04d}"
                steps.append(("transaction", (amount, user.currency, merchant)))
                steps.append(("page_view", None))
            if rng.random() < 0.03:
                steps.append(("password_change", (user.email_domain, user.phone)))
            if rng.random() < 0.5:
                steps.append(("logout", None))
            for event_type, extra in steps:
                if made >= target or t >= d.end:
                    break
                if first:
                    d.protected.add(len(d.events))
                    first = False
                emit(t, u, event_type, ctx, extra)
                made += 1
                t += rng.randrange(2_000, 90_000)


# --------------------------------------------------------------------------------------------
# Fraud rings


def _ring_window(d: _Day) -> int:
    """Start of a ring's burst of activity, leaving three hours before the day ends."""
    rng = d.rng
    hour = rng.choice((1, 2, 3, 4, 10, 13, 15, 19, 21))
    return d.start + min(hour * _MS_HOUR + rng.randrange(_MS_HOUR), d.length - 3 * _MS_HOUR)


def _fraud_member(
    d: _Day,
    u: int,
    t: int,
    pick_ctx: Callable[[], Ctx],
    *,
    signup: bool,
    n_tx: int,
    amount: Callable[[], float],
    merchants: list[str],
    tx_gap: tuple[int, int],
) -> int:
    """The script of an active ring member; returns the time after its last event."""
    rng = d.rng
    user = d.users[u]
    ctx = pick_ctx()
    if signup:
        d.emit(t, u, "signup", ctx, (user.email_domain, user.phone))
        t += rng.randrange(20_000, 120_000)
    for _ in range(rng.choice((0, 0, 1, 2, 3))):
        d.emit(t, u, "login_failed", ctx)
        t += rng.randrange(1_000, 8_000)
    d.emit(t, u, "login", ctx)
    t += rng.randrange(3_000, 20_000)
    for _ in range(rng.randint(1, 3)):
        d.emit(t, u, "page_view", ctx)
        t += rng.randrange(2_000, 15_000)
    for _ in range(n_tx):
        d.emit(t, u, "transaction", pick_ctx(), (amount(), user.currency, rng.choice(merchants)))
        t += rng.randrange(*tx_gap)
    return t


def _ring_proxies(rng: random.Random, fewest: int, most: int) -> list[str]:
    """fewest to most proxy addresses in the ring address blocks."""
    return [
        f"{rng.choice(_RING_OCTETS)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(2, 255)}"
        for _ in range(rng.randint(fewest, most))
    ]


def _plant_ring(d: _Day, shape: str, size: int) -> dict:
    """Create one ring of `size` new users acting together; return its truth entry."""
    rng = d.rng
    country = _COUNTRIES[_pick(rng, d._country_cum)]
    domain = rng.choice(_DISPOSABLE_DOMAINS) if shape in ("signup_burst", "shared_device") else None
    members = [d.new_user(country=(country[0], country[1]), email_domain=domain) for _ in range(size)]
    merchants = [f"m-{rng.randrange(2000, 2100):04d}" for _ in range(rng.randint(1, 2))]
    t0 = _ring_window(d)
    entry: dict = {
        "shape": shape,
        "members": members,
        "sleepers": [],
        "devices": [],
        "ips": [],
        "fingerprints": [],
        "merchants": sorted(set(merchants)),
        "start_ms": t0,
    }

    def cashout() -> float:
        return round(rng.uniform(150.0, 900.0), 2)

    if shape == "shared_device":
        devices = [
            d.device(rng.choice(("phone", "desktop")), "", country[0]) for _ in range(rng.randint(1, 3))
        ]
        entry["devices"] = sorted(c[1] for c in devices)
        entry["fingerprints"] = sorted(c[2] for c in devices)
        sleepers = members[-max(1, size // 6) :]
        entry["sleepers"] = sleepers
        for u in members:
            own_ip = d.home_ip()  # residential proxies: a different exit per member
            entry["ips"].append(own_ip)

            def pick(own_ip: str = own_ip) -> Ctx:
                return (own_ip,) + rng.choice(devices)[1:]

            t = t0 + rng.randrange(0, 40 * 60_000)
            if u in sleepers:
                ctx = pick()
                d.emit(t, u, "signup", ctx, (d.users[u].email_domain, d.users[u].phone))
                d.emit(t + rng.randrange(30_000, 300_000), u, "login", ctx)
                continue
            _fraud_member(
                d,
                u,
                t,
                pick,
                signup=True,
                n_tx=rng.randint(2, 5),
                amount=cashout,
                merchants=merchants,
                tx_gap=(15_000, 90_000),
            )
    elif shape == "shared_fingerprint_block":
        block = f"{rng.choice(_RING_OCTETS)}.{rng.randrange(256)}.{rng.randrange(256)}"
        ua = rng.choice(_UA["desktop"])
        fp = f"fp-{rng.getrandbits(64):016x}"
        entry["fingerprints"] = [fp]
        entry["ip_block"] = f"{block}.0/24"
        for u in members:
            dev = f"dev-{rng.getrandbits(64):016x}"  # emulators reset the device id, not the fingerprint
            entry["devices"].append(dev)

            def pick(dev: str = dev) -> Ctx:
                return (f"{block}.{rng.randrange(2, 255)}", dev, fp, ua, country[0])

            _fraud_member(
                d,
                u,
                t0 + rng.randrange(0, 60 * 60_000),
                pick,
                signup=True,
                n_tx=rng.randint(2, 5),
                amount=cashout,
                merchants=merchants,
                tx_gap=(10_000, 60_000),
            )
    elif shape == "chain":
        own = [d.device(rng.choice(("phone", "desktop")), d.home_ip(), country[0]) for _ in members]
        links = []
        for i in range(size - 1):
            if i % 2 == 0:
                shared = d.device("desktop", "", country[0])
                links.append({"kind": "device", "value": shared[1], "users": [members[i], members[i + 1]]})
                link_ctx = [(own[i][0],) + shared[1:], (own[i + 1][0],) + shared[1:]]
            else:
                ip = d.home_ip()
                links.append({"kind": "ip", "value": ip, "users": [members[i], members[i + 1]]})
                link_ctx = [(ip,) + own[i][1:], (ip,) + own[i + 1][1:]]
            own_links = entry.setdefault("_ctx", {})
            own_links.setdefault(i, []).append(link_ctx[0])
            own_links.setdefault(i + 1, []).append(link_ctx[1])
        entry["links"] = links
        entry["devices"] = sorted({c[1] for c in own} | {x["value"] for x in links if x["kind"] == "device"})
        entry["ips"] = sorted({c[0] for c in own} | {x["value"] for x in links if x["kind"] == "ip"})
        ctx_by_member = entry.pop("_ctx")
        for i, u in enumerate(members):
            # Account takeover: an old account, its password changed, then drained.
            t = t0 + i * rng.randrange(60_000, 240_000)
            ctx = own[i]
            d.emit(t, u, "login", ctx)
            for link in ctx_by_member.get(i, []):
                t += rng.randrange(10_000, 60_000)
                d.emit(t, u, "login", link)
                t += rng.randrange(5_000, 30_000)
                d.emit(t, u, "transaction", link, (cashout(), d.users[u].currency, rng.choice(merchants)))
            t += rng.randrange(10_000, 60_000)
            d.emit(t, u, "password_change", ctx, (d.users[u].email_domain, d.users[u].phone))
            _fraud_member(
                d,
                u,
                t + 30_000,
                lambda ctx=ctx: ctx,
                signup=False,
                n_tx=rng.randint(1, 3),
                amount=cashout,
                merchants=merchants,
                tx_gap=(20_000, 90_000),
            )
    elif shape == "signup_burst":
        proxies = _ring_proxies(rng, 2, 3)
        entry["ips"] = sorted(set(proxies))
        entry["email_domain"] = domain
        burst = rng.randrange(3, 11) * 60_000
        entry["burst_ms"] = burst
        for u in members:
            ctx = d.device(rng.choice(("phone", "desktop")), rng.choice(proxies), country[0])
            entry["devices"].append(ctx[1])
            _fraud_member(
                d,
                u,
                t0 + rng.randrange(burst),
                lambda ctx=ctx: ctx,
                signup=True,
                n_tx=rng.randint(2, 4),
                amount=cashout,
                merchants=merchants,
                tx_gap=(20_000, 120_000),
            )
    elif shape == "velocity":
        proxies = _ring_proxies(rng, 1, 2)
        entry["ips"] = sorted(set(proxies))
        base = rng.uniform(20.0, 60.0)
        entry["amount_base"] = round(base, 2)
        for u in members:
            ctx = d.device("desktop", rng.choice(proxies), country[0])
            entry["devices"].append(ctx[1])
            _fraud_member(
                d,
                u,
                t0 + rng.randrange(0, 10 * 60_000),
                lambda ctx=ctx: ctx,
                signup=False,
                n_tx=rng.randint(8, 20),
                amount=lambda: round(base * rng.uniform(0.97, 1.03), 2),
                merchants=merchants,
                tx_gap=(5_000, 30_000),
            )
    else:  # pragma: no cover - shapes are a closed set
        raise ValueError(f"unknown ring shape {shape!r}")
    entry["devices"] = sorted(set(entry["devices"]))
    entry["ips"] = sorted(set(entry["ips"]))
    return entry


# --------------------------------------------------------------------------------------------
# Writing


def _reverse_field_map(client: ClientConfig) -> dict[str, str]:
    """canonical field -> the client's field name (first client name in sorted order wins)."""
    out: dict[str, str] = {}
    for client_field in sorted(client.field_map):
        out.setdefault(client.field_map[client_field], client_field)
    return out


class _TimeFormatter:
    """Event times in the contract's four spellings, without datetime objects per record."""

    def __init__(self, client_offset_min: int) -> None:
        self.offsets = (client_offset_min,) + _OFFSETS_MIN
        self._dates: dict[int, str] = {}

    def _clock(self, seconds: int) -> str:
        days, sod = divmod(seconds, 86400)
        date = self._dates.get(days)
        if date is None:
            date = self._dates[days] = dt.date.fromordinal(719163 + days).isoformat()
        hh, rem = divmod(sod, 3600)
        mm, ss = divmod(rem, 60)
        return f"{date}T{hh:02d}:{mm:02d}:{ss:02d}"

    def value(self, ms: int, fmt: int) -> str | int:
        if fmt == 0:
            return f"{self._clock(ms // 1000)}.{ms % 1000:03d}Z"
        if fmt == 2:
            return ms // 1000
        if fmt == 3:
            return ms
        off = self.offsets[fmt - 4]
        sign = "-" if off < 0 else "+"
        return f"{self._clock(ms // 1000 + off * 60)}{sign}{abs(off) // 60:02d}:{abs(off) % 60:02d}"


def _open_writer(path: Path) -> tuple[io.TextIOBase, list]:
    """A buffered text writer for `path`, gzip (mtime 0, no name) when it ends in .gz."""
    raw = open(path, "wb")  # noqa: SIM115 - closed by _close_writer
    closers = [raw]
    if path.name.endswith(".gz"):
        gz = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6)
        closers.insert(0, gz)
        target = gz
    else:
        target = raw
    text = io.TextIOWrapper(io.BufferedWriter(target, 1 << 20), encoding="utf-8", newline="\n")
    return text, closers


def _close_writer(text: io.TextIOBase, closers: list) -> None:
    text.close()  # flushes both buffers; a GzipFile then still needs its trailer written
    for c in closers:
        c.close()


# --------------------------------------------------------------------------------------------
# The client-day


def generate_client_day(
    client: ClientConfig,
    day: dt.date,
    out_dir: Path,
    *,
    events: int,
    seed: int,
    malformed_rate: float = 0.01,
    truth_dir: Path,
    files_per_folder: int = 2,
    progress: Progress | None = None,
) -> GenerationReport:
    """Write one client-day of raw input (exactly `events` records) and its truth.json; report it.

    `files_per_folder` is the number of files of each format in each folder, so a folder holds
    4 x files_per_folder files. `progress`, if given, is called with the number of records
    written since its previous call.
    """
    if events < MIN_EVENTS:
        raise ValueError(f"events must be at least {MIN_EVENTS}, got {events}")
    if not 0.0 <= malformed_rate <= 0.2:
        raise ValueError(f"malformed_rate must be within [0, 0.2], got {malformed_rate}")
    if files_per_folder < 1:
        raise ValueError(f"files_per_folder must be at least 1, got {files_per_folder}")
    began = time.perf_counter()
    d = _Day(client, day, seed)
    rng = d.rng

    n_malformed = round(events * malformed_rate)
    n_dup = round(events * DUPLICATE_RATE)
    n_logical = events - n_dup  # malformed records are corrupted logical events

    total_users, ring_budget = _plan_sizes(events)
    max_ring = max(5, min(40, total_users // 40))
    ring_sizes: list[int] = []
    while len(ring_sizes) < len(RING_SHAPES) or sum(ring_sizes) < ring_budget:
        ring_sizes.append(rng.randint(5, max_ring))
    n_legit = total_users - sum(ring_sizes)
    legit_truth = _legit_population(d, max(n_legit, 20))
    legit = list(range(len(d.users)))

    rings: dict[str, dict] = {}
    for k, size in enumerate(ring_sizes):
        shape = RING_SHAPES[k % len(RING_SHAPES)]
        rings[f"ring-{k + 1:03d}"] = _plant_ring(d, shape, size)
    n_ring_events = len(d.events)
    # Ring activity first, then ordinary users fill the day to the exact record count.
    _legit_activity(d, legit, n_logical - n_ring_events)
    ev = d.events
    n_ev = len(ev)

    # Late records: ordinary events pushed into the evening before the client-day.
    candidates = [i for i in range(n_ring_events, n_ev) if i not in d.protected]
    rng.shuffle(candidates)
    n_late = min(round(events * LATE_RATE), len(candidates) // 4)
    late_idx = candidates[:n_late]
    for i in late_idx:
        ev[i][0] = d.start - rng.randrange(1_000, 6 * _MS_HOUR)
    pool = candidates[n_late:]
    malformed_idx = pool[:n_malformed]
    if len(malformed_idx) < n_malformed:
        raise ValueError("malformed_rate too high for this many events")
    malformed_set = set(malformed_idx)
    late_set = set(late_idx)

    # Duplicates: in-window valid records that carry an event_id, copied once each.
    dup_pool = [i for i in range(n_ev) if i not in malformed_set and i not in late_set]
    dup_src = sorted(rng.sample(dup_pool, n_dup))
    dup_set = set(dup_src)

    # Records without event_id; never two of one user, type and second (their derived ids must differ).
    has_id = [True] * n_ev
    seen_keys: set[tuple] = set()
    for i in range(n_ev):
        if i in dup_set or i in malformed_set or rng.random() >= MISSING_ID_RATE:
            continue
        t, u, et = ev[i][0], ev[i][1], ev[i][2]
        key = (u, et, t // 1000)
        if key in seen_keys:
            continue
        seen_keys.add(key)
        has_id[i] = False
    id_prefix = f"{rng.getrandbits(32):08x}-"

    # Time spelling per record: 0 ISO Z with ms, 2 epoch s, 3 epoch ms, 4.. ISO with an offset.
    tz_offset = _utc_offset_min(client, day)
    fmt = [0] * n_ev
    r = rng.random
    for i in range(n_ev):
        x = r()
        fmt[i] = 0 if x < 0.35 else 2 if x < 0.55 else 3 if x < 0.75 else 4 + int((x - 0.75) * 20) % 5

    # Files: 4 x files_per_folder per folder, formats interleaved; first records seed every file.
    files: dict[str, list[str]] = {}
    for folder in FOLDERS:
        files[folder] = [f"part-{k:04d}.{FORMATS[k % 4]}" for k in range(4 * files_per_folder)]
    file_of = [0] * n_ev
    seen_per_folder = dict.fromkeys(FOLDERS, 0)
    for i in range(n_ev):
        folder = FOLDER_OF[ev[i][2]]
        nth = seen_per_folder[folder]
        seen_per_folder[folder] = nth + 1
        file_of[i] = nth if nth < len(files[folder]) else rng.randrange(len(files[folder]))
    dup_file = {i: rng.randrange(len(files[FOLDER_OF[ev[i][2]]])) for i in dup_src}

    # Malformed kinds depend on the file's format and the record's folder.
    kind_of: dict[int, str] = {}
    for i in malformed_idx:
        name = files[FOLDER_OF[ev[i][2]]][file_of[i]]
        kinds = ["missing_user_id", "bad_event_time"]
        kinds.append("invalid_json" if ".jsonl" in name else "csv_column_count")
        if ev[i][2] == "transaction":
            kinds.append("bad_amount")
        kind_of[i] = rng.choice(kinds)
    corrupt_rng = random.Random(rng.getrandbits(64))

    # Bucket every record (and duplicate copy) into its file, in time order.
    buckets: dict[tuple[str, int], list[tuple[int, int, int]]] = {}
    for i in range(n_ev):
        buckets.setdefault((FOLDER_OF[ev[i][2]], file_of[i]), []).append((ev[i][0], i, 0))
    for i, f in dup_file.items():
        buckets.setdefault((FOLDER_OF[ev[i][2]], f), []).append((ev[i][0], i, 1))

    rmap = _reverse_field_map(client)
    date_s = day.isoformat()
    rel_root = Path("rawdata") / client.name / date_s
    final_root = Path(out_dir) / rel_root
    tf = _TimeFormatter(tz_offset)
    uids = [u.uid for u in d.users]
    encode = json.JSONEncoder(sort_keys=True, ensure_ascii=True).encode
    malformed_records: list[dict] = []
    by_source = dict.fromkeys(FOLDERS, 0)
    file_rows: list[dict] = []
    written_paths: list[Path] = []
    pending = 0

    k_user, k_time, k_type, k_eid = (
        rmap.get(c, c) for c in ("user_id", "event_time", "event_type", "event_id")
    )
    k_ip, k_dev, k_fp, k_ua, k_country = (
        rmap.get(c, c) for c in ("ip", "device_id", "browser_fingerprint", "user_agent", "country")
    )
    k_email, k_phone, k_amount, k_cur, k_merchant = (
        rmap.get(c, c) for c in ("email_domain", "phone", "amount", "currency", "merchant_id")
    )
    tmp_root = atomic.temp_dir_for(final_root)
    try:
        for folder in FOLDERS:
            (tmp_root / folder).mkdir(parents=True)
            header = [rmap.get(c, c) for c in _COLUMNS[folder]]
            for f_no, name in enumerate(files[folder]):
                path = tmp_root / folder / name
                rows = sorted(buckets.get((folder, f_no), ()))
                is_csv = ".csv" in name
                key = f"{rel_root.as_posix()}/{folder}/{name}"
                text, closers = _open_writer(path)
                try:
                    line = 0
                    if is_csv:
                        writer = csv.writer(text, lineterminator="\n")
                        writer.writerow(header)
                        line = 1
                    for t, i, copy in rows:
                        _t, u, et, ctx, extra = ev[i]
                        f = fmt[i]
                        tval = tf.value(t, f)
                        eid = f"{id_prefix}{i:08x}" if has_id[i] else ""
                        kind = None if copy else kind_of.get(i)
                        line += 1
                        if is_csv:
                            row = [uids[u], tval, et, eid, ctx[0], ctx[1], ctx[2], ctx[3], "", "", ctx[4]]
                            if extra is not None:
                                if et == "transaction":
                                    row += (f"{extra[0]:.2f}", extra[1], extra[2])
                                else:
                                    row[8], row[9] = extra
                            elif folder == "transactions":
                                row += ("", "", "")
                            if kind is not None:
                                _corrupt_csv(row, kind, corrupt_rng)
                            writer.writerow(row)
                        else:
                            rec = {
                                k_user: uids[u],
                                k_time: tval,
                                k_type: et,
                                k_ip: ctx[0],
                                k_dev: ctx[1],
                                k_fp: ctx[2],
                                k_ua: ctx[3],
                                k_country: ctx[4],
                            }
                            if eid:
                                rec[k_eid] = eid
                            if extra is not None:
                                if et == "transaction":
                                    rec[k_amount], rec[k_cur], rec[k_merchant] = extra
                                else:
                                    rec[k_email], rec[k_phone] = extra
                            if kind is None:
                                text.write(encode(rec))
                            else:
                                text.write(
                                    _corrupt_json(rec, kind, k_user, k_time, k_amount, encode, corrupt_rng)
                                )
                            text.write("\n")
                        if kind is not None:
                            malformed_records.append({"file": key, "line": line, "kind": kind})
                        pending += 1
                        if progress is not None and pending >= 8192:
                            progress(pending)
                            pending = 0
                finally:
                    _close_writer(text, closers)
                by_source[folder] += len(rows)
                file_rows.append({"file": key, "format": FORMATS[f_no % 4], "records": len(rows)})
                written_paths.append(final_root / folder / name)

        # Labels: a sample of users with their true class, ring members over-sampled.
        ring_members = sorted({u for r_ in rings.values() for u in r_["members"]})
        ring_set = set(ring_members)
        legit_all = [u for u in range(len(d.users)) if u not in ring_set]
        labelled = rng.sample(legit_all, round(len(legit_all) * LABEL_SHARE))
        labelled += rng.sample(ring_members, max(1, round(len(ring_members) * 0.5)))
        label_rows = sorted((uids[u], "fraud" if u in ring_set else "legit") for u in labelled)
        (tmp_root / "labels").mkdir()
        with open(tmp_root / "labels" / "labels.csv", "w", encoding="utf-8", newline="") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(["user_id", "label"])
            w.writerows(label_rows)
        written_paths.append(final_root / "labels" / "labels.csv")

        atomic.replace_dir(tmp_root, final_root)  # readers never see a half-written client-day
    finally:
        if tmp_root.exists():
            shutil.rmtree(tmp_root, ignore_errors=True)
    if progress is not None and pending:
        progress(pending)

    # Ground truth, from the valid in-window records only.
    valid_in_window = [i for i in range(n_ev) if i not in malformed_set and i not in late_set]
    by_type: dict[str, int] = {}
    carrier_seen: dict[str, set[int]] = {ip: set() for ip in legit_truth["carrier_ips"]}
    active: set[int] = set()
    for i in valid_in_window:
        _t, u, et, ctx, _x = ev[i]
        by_type[et] = by_type.get(et, 0) + 1
        active.add(u)
        s = carrier_seen.get(ctx[0])
        if s is not None:
            s.add(u)
    malformed_by_kind = dict.fromkeys(MALFORMED_KINDS, 0)
    for rec in malformed_records:
        malformed_by_kind[rec["kind"]] += 1
    malformed_records.sort(key=lambda m: (m["file"], m["line"]))
    n_missing_id = sum(1 for i in range(n_ev) if not has_id[i])

    def ids(xs) -> list[str]:
        return sorted(uids[u] for u in xs)

    ring_doc = {}
    for rid, entry in rings.items():
        doc = {k: v for k, v in entry.items() if k not in ("members", "sleepers", "links")}
        doc["members"] = ids(entry["members"])
        doc["sleepers"] = ids(entry["sleepers"])
        doc["size"] = len(entry["members"])
        if "links" in entry:
            doc["links"] = [
                {"kind": x["kind"], "value": x["value"], "users": [uids[u] for u in x["users"]]}
                for x in entry["links"]
            ]
        ring_doc[rid] = doc
    households_doc = [
        {
            "members": ids(h["members"]),
            "device_id": h["device_id"],
            "ip": h["ip"],
            "browser_fingerprint": h["browser_fingerprint"],
        }
        for h in legit_truth["households"]
    ]
    n_valid = events - n_malformed
    truth = {
        "client": client.name,
        "date": date_s,
        "seed": seed,
        "events_requested": events,
        "malformed_rate": malformed_rate,
        "timezone": client.timezone,
        "day_window_ms": [d.start, d.end],
        "field_map": dict(sorted(client.field_map.items())),
        "record_definition": "one non-empty line of a JSONL file or one data row of a CSV file",
        "totals": {
            "records": events,
            "valid_records": n_valid,
            "malformed": n_malformed,
            "duplicates": n_dup,
            "late": n_late,
            "unique_in_window": len(valid_in_window),
            "missing_event_id": n_missing_id,
            "users": len(d.users),
            "active_users": len(active),
            "ring_members": len(ring_members),
            "data_files": len(file_rows),
            "by_source": by_source,
            "by_event_type": dict(sorted(by_type.items())),
        },
        "expected": {
            "records_read": events,
            "records_accepted": n_valid,
            "records_quarantined": n_malformed,
            "duplicates": n_dup,
            "late_records": n_late,
            "users": len(active),
            "fraud_rings": len(rings),
        },
        "rings": ring_doc,
        "households": households_doc,
        "carrier_nat": {
            "ips": legit_truth["carrier_ips"],
            "users": ids(legit_truth["carrier_users"]),
            "users_per_ip": {ip: len(s) for ip, s in sorted(carrier_seen.items())},
        },
        "malformed": {"total": n_malformed, "by_kind": malformed_by_kind, "records": malformed_records},
        "duplicates": {"total": n_dup, "event_ids": sorted(f"{id_prefix}{i:08x}" for i in dup_src)},
        "labels": {
            "file": f"{rel_root.as_posix()}/labels/labels.csv",
            "rows": len(label_rows),
            "fraud": sum(1 for _, lab in label_rows if lab == "fraud"),
            "legit": sum(1 for _, lab in label_rows if lab == "legit"),
        },
        "files": file_rows,
    }
    truth_path = Path(truth_dir) / client.name / date_s / "truth.json"
    atomic.write_json(truth_path, truth)

    return GenerationReport(
        client=client.name,
        date=date_s,
        root=final_root,
        truth_path=truth_path,
        files=written_paths,
        records=events,
        valid_records=n_valid,
        malformed=n_malformed,
        malformed_by_kind=malformed_by_kind,
        duplicates=n_dup,
        late=n_late,
        missing_event_id=n_missing_id,
        users=len(d.users),
        rings=len(rings),
        ring_members=len(ring_members),
        households=len(households_doc),
        carrier_users=len(legit_truth["carrier_users"]),
        carrier_ips=len(legit_truth["carrier_ips"]),
        labels=len(label_rows),
        seconds=time.perf_counter() - began,
        by_source=by_source,
    )


def _utc_offset_min(client: ClientConfig, day: dt.date) -> int:
    """The client's UTC offset in minutes at the start of `day`."""
    start = dt.datetime.combine(day, dt.time(), tzinfo=client.tz)
    return int(start.utcoffset().total_seconds() // 60)


def _corrupt_csv(row: list[str], kind: str, rng: random.Random) -> None:
    """Damage one CSV row in place so a strict reader rejects it for `kind`."""
    if kind == "missing_user_id":
        row[0] = ""
    elif kind == "bad_event_time":
        row[1] = rng.choice(_BAD_TIMES)
    elif kind == "bad_amount":
        row[11] = rng.choice(_BAD_AMOUNTS)
    elif kind == "csv_column_count":
        if rng.random() < 0.5:
            row.pop()
        else:
            row.append("extra")


def _corrupt_json(
    rec: dict, kind: str, k_user: str, k_time: str, k_amount: str, encode, rng: random.Random
) -> str:
    """One JSONL line that a strict reader rejects for `kind`."""
    if kind == "invalid_json":
        text = encode(rec)
        return text[: rng.randrange(1, len(text) - 1)]  # an unclosed object never parses
    if kind == "missing_user_id":
        del rec[k_user]
    elif kind == "bad_event_time":
        bad = rng.choice(_BAD_TIMES)
        if bad:
            rec[k_time] = bad
        else:
            del rec[k_time]
    elif kind == "bad_amount":
        rec[k_amount] = rng.choice(_BAD_AMOUNTS)
    return encode(rec)
