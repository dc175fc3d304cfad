"""Pure parts of MX routing: result types, name checks, host ordering and a TTL cache.

Nothing here touches a socket or the event loop, so each rule (what a site key is, how hosts are
ordered, when a cached answer is stale) is testable with plain calls and a fake clock. The I/O
shell that asks DNS lives in `mta.delivery.dnsroute`.
"""

from __future__ import annotations

import functools
import ipaddress
import random
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

import dns.exception
import dns.name

# Enhanced status codes (RFC 3463) and reasons, in the project's reason taxonomy.
STATUS_BAD_DESTINATION = "5.1.2"     # the domain does not exist or cannot receive mail
STATUS_NULL_MX = "5.1.10"            # RFC 7505: the domain says it accepts no mail
STATUS_ROUTING_FAILED = "4.4.3"      # directory server failure: try again later

REASON_HOST_UNKNOWN = "hostunknown"
REASON_NOT_ACCEPT = "notaccept"
REASON_NETWORK_ERROR = "networkerror"

# A mail domain is made of LDH labels (RFC 5321 section 4.1.2); IDN labels arrive here as A-labels.
_LDH_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


@dataclass(frozen=True, slots=True)
class MxHost:
    """One mail exchanger with every address it resolved to (IPv4 and IPv6 alike)."""

    name: str                       # lower case, no trailing dot
    preference: int
    addresses: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Route:
    """Where mail for `domain` goes, and until when (on the resolver's clock) that holds."""

    domain: str                     # A-label form, lower case, no trailing dot
    hosts: tuple[MxHost, ...]       # only hosts with at least one address, by preference
    site_key: str                   # canonical MX host set, shared by domains with the same MXs
    implicit: bool                  # no MX records: the domain itself is the exchanger (RFC 5321 5.1)
    expires: float

    @property
    def host_names(self) -> tuple[str, ...]:
        return tuple(host.name for host in self.hosts)


class RouteError(Exception):
    """A domain cannot be routed now (`permanent` False) or ever (`permanent` True)."""

    def __init__(self, permanent: bool, status: str, reason: str, text: str) -> None:
        super().__init__(f"{status} {text}")
        self.permanent = permanent
        self.status = status
        self.reason = reason
        self.text = text

    def copy(self) -> RouteError:
        """A fresh exception with the same fields, so a cached failure can be raised again
        without piling up tracebacks on one shared instance."""
        return RouteError(self.permanent, self.status, self.reason, self.text)

    def __repr__(self) -> str:
        return (f"RouteError(permanent={self.permanent}, status={self.status!r}, "
                f"reason={self.reason!r}, text={self.text!r})")


def host_unknown(text: str) -> RouteError:
    return RouteError(True, STATUS_BAD_DESTINATION, REASON_HOST_UNKNOWN, text)


def not_accepting(text: str) -> RouteError:
    return RouteError(True, STATUS_NULL_MX, REASON_NOT_ACCEPT, text)


def routing_failed(text: str) -> RouteError:
    return RouteError(False, STATUS_ROUTING_FAILED, REASON_NETWORK_ERROR, text)


def _idna_codec() -> dns.name.IDNACodec:
    # dnspython picks IDNA 2008 (UTS 46) when the `idna` package is installed and falls back to
    # IDNA 2003 otherwise; both agree on the names that matter in practice.
    return dns.name.IDNA_DEFAULT


@functools.lru_cache(maxsize=8192)
def normalize_domain(domain: str) -> str:
    """The A-label, lower-case, dot-less form of a mail domain, or RouteError 5.1.2.

    Accepts mixed case, one trailing dot and U-labels. Rejects what cannot be a mail domain:
    empty names, empty labels, non-LDH characters, over-long labels and IP literals.
    Cached (a refusal is not): every message asks for its domain's route, and the IDNA
    conversion took 11 us of it.
    """
    text = domain.strip()
    if text.endswith("."):
        text = text[:-1]
    if not text or text.startswith("[") or _is_ip_literal(text):
        raise host_unknown(f"invalid domain name {domain!r}")
    try:
        name = dns.name.from_unicode(text, idna_codec=_idna_codec())
        ascii_text = name.to_text(omit_final_dot=True).lower()
    except (dns.exception.DNSException, UnicodeError, ValueError) as exc:
        raise host_unknown(f"invalid domain name {domain!r}: {exc}") from None
    labels = ascii_text.split(".")
    if not all(_LDH_LABEL.match(label) for label in labels):
        raise host_unknown(f"invalid domain name {domain!r}")
    return ascii_text


def _is_ip_literal(text: str) -> bool:
    try:
        ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return False
    return True


def exchange_host_name(exchange: str) -> str | None:
    """The usable host name of an MX exchange, or None when it must be skipped.

    An IP address written as an MX target is invalid (RFC 7505/5321 want a host name) and
    the root name "." is the null MX, which has no host to connect to.
    """
    name = exchange.rstrip(".").lower()
    if not name or _is_ip_literal(name):
        return None
    return name


def site_key_for(host_names: Iterable[str]) -> str:
    """One key per *set* of MX host names, so domains hosted alike share a site."""
    return ",".join(sorted({name.rstrip(".").lower() for name in host_names}))


def ordered_hosts(route: Route, rng: random.Random) -> list[MxHost]:
    """Hosts in MX preference order, shuffled among equal preferences (RFC 5321 5.1)."""
    by_preference: dict[int, list[MxHost]] = {}
    for host in route.hosts:
        by_preference.setdefault(host.preference, []).append(host)
    ordered: list[MxHost] = []
    for preference in sorted(by_preference):
        group = list(by_preference[preference])
        rng.shuffle(group)
        ordered.extend(group)
    return ordered


def bounded(value: float, lower: float, upper: float) -> float:
    return max(lower, min(upper, value))


K = TypeVar("K")
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """A size-bounded LRU map whose entries expire at a time on an injected clock.

    Expired entries are dropped when read; the LRU bound keeps memory flat however many
    domains pass through.
    """

    def __init__(self, max_entries: int, clock: Callable[[], float]) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, value = entry
        if self._clock() >= expires:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    def put(self, key: K, value: V, expires: float) -> None:
        self._entries[key] = (expires, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def discard(self, key: K) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
