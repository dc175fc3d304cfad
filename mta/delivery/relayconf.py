"""The `[relays.NAME]` config tables: upstream relays (smarthosts) a pool may deliver through
instead of looking up MX hosts, and the runtime `Relay` built from one at start-up.

    [relays.esp]
    hosts = ["smtp.esp.example:587", "smtp2.esp.example:465"]   # tried in this order
    tls = ""                    # starttls | implicit | none; "" = by port (465 implicit, else starttls)
    username = "outreach@example.com"
    password_file = "/etc/warmup-mta/esp.secret"                # or password = "..."
    verify_certificate = true
    ca_file = ""                # a private CA's certificate(s); "" = the system's store
    max_connections = 4         # per source address, like [delivery] max_connections
    messages_per_connection = 100
    rate_per_minute = 0         # relay-wide; 0 = no cap of ours
    warmup = false              # true: policyd grants relay mail as an ISP of its own

    [egress.pools.outreach]
    sources = ["ip1"]
    relay = "esp"

Plain text (tls = "none") is allowed only to loopback hosts: a tunnel (stunnel) or a relay on the
same machine, where nothing crosses a wire. Anywhere else the mail, and the password with it,
would be readable by every hop in between, which is exactly what the relay's TLS is for.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from warmup_base.configload import ConfigError
from warmup_base.listen import parse_hostport

__all__ = ["SITE_PREFIX", "Relay", "RelayHost", "RelaySection", "load_relay", "validate_relays"]

TLS_MODES = ("", "starttls", "implicit", "none")
IMPLICIT_TLS_PORT = 465          # "submissions" (RFC 8314): TLS from the first byte
SUBMISSION_PORT = 587            # STARTTLS
SITE_PREFIX = "relay:"           # site keys of relays; a colon is never part of an MX site key


@dataclass
class RelaySection:
    hosts: list[str] = field(default_factory=list)
    tls: str = ""
    username: str = ""
    password: str = field(default="", repr=False)
    password_file: str = ""
    verify_certificate: bool = True
    ca_file: str = ""
    max_connections: int = 4
    messages_per_connection: int = 100
    rate_per_minute: float = 0.0
    warmup: bool = False


@dataclass(frozen=True, slots=True)
class RelayHost:
    name: str                    # host name or IP address, as configured
    port: int
    tls: str                     # starttls | implicit | none

    @property
    def label(self) -> str:
        return f"[{self.name}]:{self.port}" if ":" in self.name else f"{self.name}:{self.port}"


@dataclass(frozen=True)
class Relay:
    """One relay as delivery uses it: hosts in order, credentials, the TLS context and limits."""

    name: str
    hosts: tuple[RelayHost, ...]
    username: str = ""
    password: str = field(default="", repr=False)
    tls_context: ssl.SSLContext | None = field(default=None, repr=False, compare=False)
    max_connections: int = 4
    messages_per_connection: int = 100
    rate_per_minute: float = 0.0
    warmup: bool = False

    @property
    def site_key(self) -> str:
        return SITE_PREFIX + self.name

    @property
    def host_names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(h.name for h in self.hosts))


def is_loopback(host: str) -> bool:
    """Only what cannot leave this machine: loopback addresses and the name `localhost` (a name
    that resolves to a loopback address today may not tomorrow)."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def parse_relay_host(value: str, key: str, tls: str) -> RelayHost:
    """"host:port" (or "[v6]:port", or a bare host: port 465 with tls = "implicit", else 587)."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{key}: expected host:port, got {value!r}")
    text = value.strip()
    # No port: a name, "[2001:db8::1]", or an IPv6 address without brackets.
    bare = "]:" not in text if text.startswith("[") else ":" not in text or text.count(":") > 1
    default = IMPLICIT_TLS_PORT if tls == "implicit" else SUBMISSION_PORT
    host, port = (text.strip("[]"), default) if bare else parse_hostport(text, key)
    if not 0 < port <= 65535 or not host or any(c.isspace() or c in "/@[]" for c in host) \
            or (":" in host and not _is_ip(host)):
        raise ConfigError(f"{key}: expected host:port, got {value!r}")
    mode = tls or ("implicit" if port == IMPLICIT_TLS_PORT else "starttls")
    return RelayHost(host, port, mode)


def validate_relays(relays: Mapping[str, RelaySection], pools: Mapping[str, Any]) -> None:
    """Raises ConfigError naming the bad key; reads the password and CA files as start-up will."""
    for name, section in relays.items():
        load_relay(name, section)
    for pname, pool in pools.items():
        relay = getattr(pool, "relay", "")
        if relay and relay not in relays:
            known = ", ".join(sorted(relays)) or "none configured"
            raise ConfigError(f"egress.pools.{pname}.relay: no relay named {relay!r} ([relays.NAME]: {known})")


def load_relay(name: str, section: RelaySection) -> Relay:
    key = f"relays.{name}"
    if not name or any(c.isspace() or c in ",:" for c in name):
        raise ConfigError(f"{key}: a relay name must not be empty or hold spaces, commas or colons")
    if section.tls not in TLS_MODES:
        raise ConfigError(f"{key}.tls: one of starttls, implicit, none (or \"\" to go by port); got {section.tls!r}")
    if not section.hosts:
        raise ConfigError(f"{key}.hosts: a relay needs at least one host:port")
    hosts = tuple(parse_relay_host(h, f"{key}.hosts[{i}]", section.tls) for i, h in enumerate(section.hosts))
    for i, host in enumerate(hosts):
        if host.tls == "none" and not is_loopback(host.name):
            what = "the mail and the relay password" if section.username else "the mail"
            raise ConfigError(f"{key}.tls: \"none\" would send {what} in plain text to {host.name} "
                              f"({key}.hosts[{i}]); it is allowed only for loopback hosts (a tunnel or a "
                              "relay on this machine). Use starttls or implicit")
    for limit in ("max_connections", "messages_per_connection"):
        if getattr(section, limit) < 1:
            raise ConfigError(f"{key}.{limit}: must be at least 1, got {getattr(section, limit)}")
    if section.rate_per_minute < 0:
        raise ConfigError(f"{key}.rate_per_minute: must be 0 (no cap) or more")
    password = _password(section, key)
    return Relay(name, hosts, section.username, password, _tls_context(section, key), section.max_connections,
                 section.messages_per_connection, section.rate_per_minute, section.warmup)


def _password(section: RelaySection, key: str) -> str:
    if section.password and section.password_file:
        raise ConfigError(f"{key}.password / {key}.password_file: give one, not both")
    if not section.username:
        if section.password or section.password_file:
            raise ConfigError(f"{key}.username: required with a password (AUTH needs both)")
        return ""
    if section.password:
        return section.password
    if not section.password_file:
        raise ConfigError(f"{key}.password_file: required with {key}.username (or give {key}.password)")
    try:
        with open(section.password_file, encoding="utf-8") as f:
            secret = f.read().strip("\r\n")
    except FileNotFoundError:
        raise ConfigError(f"{key}.password_file: no such file: {section.password_file}") from None
    except (OSError, UnicodeError) as exc:
        raise ConfigError(f"{key}.password_file: cannot read {section.password_file}: {exc}") from None
    if not secret:
        raise ConfigError(f"{key}.password_file: {section.password_file} is empty")
    return secret


def _tls_context(section: RelaySection, key: str) -> ssl.SSLContext:
    """Unlike MX delivery (opportunistic TLS, RFC 7435), a relay is a known party we give a
    password to: its certificate is checked unless the operator says otherwise."""
    if section.ca_file and not os.path.isfile(section.ca_file):
        raise ConfigError(f"{key}.ca_file: no such file: {section.ca_file}")
    try:
        ctx = ssl.create_default_context(cafile=section.ca_file or None)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"{key}.ca_file: not a PEM certificate file: {section.ca_file} ({exc})") from None
    if not section.verify_certificate:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx
