"""`[tracking]` and `[engagement]` sections of the MTA config, validated at start-up."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from mta.compliance.unsubscribe import is_local_host
from warmup_base.configload import ConfigError, Duration
from warmup_base.listen import parse_hostport

__all__ = ["EngagementSection", "TrackingSection", "validate_engagement_section", "validate_tracking_section"]

_HEADER_NAME = re.compile(r"[!-9;-~]+")


@dataclass
class TrackingSection:
    enabled: bool = False
    listen: str = ""                    # public HTTP listener: /c/<token>, /o/<token>
    tls_cert: str = ""                  # serve https itself (else put a TLS proxy in front)
    tls_key: str = ""
    base_url: str = ""                  # "https://t.example.com": the links in mail point here
    streams: list[str] = field(default_factory=list)     # streams whose mail is tracked
    tenants: list[str] = field(default_factory=list)     # and tenants whose mail is tracked, any stream
    clicks: bool = True
    opens: bool = True
    header: str = "X-Track"             # "X-Track: no" in a message turns tracking off for it (then removed)
    secret: str = ""                    # HMAC key; or secret_file; neither = the VERP key
    secret_file: str = ""
    previous_secrets: list[str] = field(default_factory=list)   # verify, never issue (rotation)
    token_max_age: Duration = Duration(0)                      # 0 = links work forever
    fast_click_seconds: Duration = Duration(10)                # a click this soon after delivery: a scanner
    burst_seconds: Duration = Duration(5)
    burst_links: int = 3

    def keys(self, fallback: bytes = b"") -> list[bytes]:
        first = self.secret.encode()
        if not first and self.secret_file:
            with open(self.secret_file, "rb") as f:
                first = f.read().strip()
        return [k for k in (first or fallback, *(s.encode() for s in self.previous_secrets)) if k]

    def tracks(self, stream: str, tenant: str) -> bool:
        return self.enabled and (stream in self.streams or (bool(tenant) and tenant in self.tenants))


@dataclass
class EngagementSection:
    path: str = ""                      # SQLite file; default <spool_dir>/engagement.db
    half_life: Duration = Duration(30 * 86400)
    inactive_after: Duration = Duration(180 * 86400)
    order_streams: list[str] = field(default_factory=lambda: ["marketing"])   # engaged first when capped
    redis: str = ""                     # "redis://host:6379/0": share the store between nodes (else SQLite)
    redis_prefix: str = "mta:engagement:"


def validate_tracking_section(t: TrackingSection, streams: set[str], prefix: str = "tracking") -> None:
    if t.enabled and not t.base_url:
        raise ConfigError(f"{prefix}.base_url: required when tracking is enabled (e.g. https://t.example.com)")
    if t.base_url:
        parts = urlsplit(t.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise ConfigError(f"{prefix}.base_url: expected a URL such as https://t.example.com, got {t.base_url!r}")
        if parts.scheme == "http" and not is_local_host(parts.hostname):
            # Mailbox providers and browsers flag plain-http links in mail; only local trials may use it.
            raise ConfigError(f"{prefix}.base_url: must be https:// (plain http only for localhost), "
                              f"got {t.base_url!r}")
    if t.listen:
        parse_hostport(t.listen, f"{prefix}.listen")
    if bool(t.tls_cert) != bool(t.tls_key):
        raise ConfigError(f"{prefix}.tls_cert / {prefix}.tls_key: give both or neither")
    for i, s in enumerate(t.streams):
        if s not in streams:
            raise ConfigError(f"{prefix}.streams[{i}]: no stream named {s!r}")
    if t.header and not _HEADER_NAME.fullmatch(t.header):
        raise ConfigError(f"{prefix}.header: not a header field name: {t.header!r}")
    if t.token_max_age < 0:
        raise ConfigError(f"{prefix}.token_max_age: must be 0 (no limit) or positive")
    if t.burst_links < 2:
        raise ConfigError(f"{prefix}.burst_links: must be at least 2, got {t.burst_links}")
    for i, secret in enumerate(t.previous_secrets):
        if not secret:
            raise ConfigError(f"{prefix}.previous_secrets[{i}]: must not be empty")


def validate_engagement_section(e: EngagementSection, streams: set[str], prefix: str = "engagement") -> None:
    # Scores are kept anchored at 2026 (score.EPOCH); a week's half-life keeps them finite for decades.
    if e.half_life < 7 * 86400:
        raise ConfigError(f"{prefix}.half_life: must be at least 7 days, got {e.half_life}s")
    if e.inactive_after <= 0:
        raise ConfigError(f"{prefix}.inactive_after: must be positive")
    for i, s in enumerate(e.order_streams):
        if s not in streams:
            raise ConfigError(f"{prefix}.order_streams[{i}]: no stream named {s!r}")
    if e.redis and urlsplit(e.redis).scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(f"{prefix}.redis: expected redis://host:port/db, rediss://... or unix://..., "
                          f"got {e.redis!r}")
