"""Virtual nodes: the attribute values (device, IP, fingerprint, ...) that link accounts.

`event_nodes` is the reference definition of which nodes an event carries and how their values
are normalised. The Spark job (jobs/virtual_nodes.py) re-expresses the same rules with SQL
functions for speed; tests keep the two in agreement, so change both together.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

NODE_TYPES = ("device", "ip", "ip_block", "fingerprint", "phone", "email_domain")

# Whitespace stripped around every value. Spelled out (not \s) so Python and Java regexes agree.
WHITESPACE = " \t\n\r\f\x0b"

# A dotted-quad IPv4 address; leading zeros are rejected, as the ipaddress module does.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
IPV4_PATTERN = rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}"
HEXTET_PATTERN = r"[0-9a-f]{1,4}"
_IPV4 = re.compile(IPV4_PATTERN)
_HEXTET = re.compile(HEXTET_PATTERN)
_V6_CHARS = re.compile(r"[0-9a-f:]+")
# An IPv6 address may end in an embedded IPv4 address; it fills the last two hextets.
_V6_V4_TAIL = re.compile(rf":{IPV4_PATTERN}$")
_ZONE = re.compile(r"%.*$")
_NON_DIGIT = re.compile(r"[^0-9]")
_EMAIL_DOMAIN_JUNK = re.compile(r"^.*@|\.+$")


def node_id(node_type: str, value: str) -> str:
    """The graph-wide id of a node: "{type}:{value}"."""
    return f"{node_type}:{value}"


def is_super(users: int, threshold: int) -> bool:
    """True when a node links more users than the client's super-node threshold."""
    return users > threshold


def clean(value: object) -> str | None:
    """The value as a string without surrounding whitespace, or None when null or blank."""
    if value is None:
        return None
    s = str(value).strip(WHITESPACE)
    return s or None


def _v6_groups(addr: str) -> list[str] | None:
    """The eight hextets of an IPv6 address ("::" expanded), or None when it is not one."""
    if not _V6_CHARS.fullmatch(addr):
        return None
    parts = addr.split("::")
    if len(parts) == 1:
        groups = addr.split(":")
        ok = len(groups) == 8 and all(_HEXTET.fullmatch(g) for g in groups)
        return groups if ok else None
    if len(parts) > 2:
        return None
    head = parts[0].split(":") if parts[0] else []
    tail = parts[1].split(":") if parts[1] else []
    if len(head) + len(tail) > 7 or not all(_HEXTET.fullmatch(g) for g in head + tail):
        return None
    return head + ["0"] * (8 - len(head) - len(tail)) + tail


def normalize_ip(value: object) -> str | None:
    """A lower-case IPv4 or IPv6 address (zone id dropped), or None when the value is not one."""
    s = clean(value)
    if s is None:
        return None
    s = s.lower()
    if _IPV4.fullmatch(s):
        return s
    if ":" not in s:
        return None
    s = _ZONE.sub("", s)
    return s if _v6_groups(_V6_V4_TAIL.sub(":0:0", s)) is not None else None


def ip_block(ip: str) -> str | None:
    """The network of a normalised address: IPv4 "a.b.c.0/24", IPv6 the /64 in compressed form."""
    if _IPV4.fullmatch(ip):
        a, b, c, _ = ip.split(".")
        return f"{a}.{b}.{c}.0/24"
    groups = _v6_groups(_V6_V4_TAIL.sub(":0:0", ip))
    if groups is None:
        return None
    head = [g.lstrip("0") or "0" for g in groups[:4]]
    # The last four hextets of a /64 network are zero, so the longest zero run (which RFC 5952
    # compresses to "::") always starts at the trailing zero hextets of the first four.
    while head and head[-1] == "0":
        head.pop()
    return ":".join(head) + "::/64"


def normalize_device(value: object) -> str | None:
    """A device id, lower-case."""
    s = clean(value)
    return s.lower() if s else None


def normalize_fingerprint(value: object) -> str | None:
    """A browser fingerprint, lower-case."""
    s = clean(value)
    return s.lower() if s else None


def normalize_phone(value: object) -> str | None:
    """A phone number as its digits only, so formatting differences do not split a node."""
    s = clean(value)
    if s is None:
        return None
    return _NON_DIGIT.sub("", s) or None


def normalize_email_domain(value: object) -> str | None:
    """An e-mail domain, lower-case, without a local part or "@" prefix and trailing dots."""
    s = clean(value)
    if s is None:
        return None
    return _EMAIL_DOMAIN_JUNK.sub("", s.lower()) or None


def event_nodes(event: dict[str, Any]) -> list[tuple[str, str]]:
    """The (node_type, value) pairs an event carries, in NODE_TYPES order; nulls are skipped."""
    out: list[tuple[str, str]] = []
    for node_type, field, normalize in _EVENT_NODE_FIELDS:
        value = normalize(event.get(field))
        if value:
            out.append((node_type, value))
            block = ip_block(value) if node_type == "ip" else None
            if block:
                out.append(("ip_block", block))
    return out


# (node type, event field, normaliser) of the nodes read straight from a field, in NODE_TYPES
# order; the ip_block node is derived from the ip.
_EVENT_NODE_FIELDS: tuple[tuple[str, str, Callable[[Any], str | None]], ...] = (
    ("device", "device_id", normalize_device),
    ("ip", "ip", normalize_ip),
    ("fingerprint", "browser_fingerprint", normalize_fingerprint),
    ("phone", "phone", normalize_phone),
    ("email_domain", "email_domain", normalize_email_domain),
)
