"""The MTA's configuration: typed dataclasses loaded once from TOML and validated at start-up.

Keys listed in shared/interfaces.md are promises to operators: they may be added to, never
renamed. Relative paths are resolved against the directory of the config file, so a config works
the same whether it is started from a shell or by systemd (whose working directory is /).
"""

from __future__ import annotations

import fnmatch
import ipaddress
import os
import re
from dataclasses import dataclass, field

from mta.compliance.dkim.config import DkimSection, validate_dkim_section
from mta.compliance.unsubscribe import UnsubscribeConfig, validate_unsubscribe_config
from mta.delivery.relayconf import RelaySection, validate_relays
from mta.eventstream.config import validate_event_stream
from mta.inbound.verp import BounceDomains
from mta.queue.limits import SiteLimits
from mta.spool.diskspace import FreeSpaceReserve
from mta.tracking.config import (
    EngagementSection,
    TrackingSection,
    validate_engagement_section,
    validate_tracking_section,
)
from mta.webhooks.config import WebhookEndpoint, validate_webhooks
from warmup_base.configload import ByteSize, ConfigError, Duration, build, check_log_level, read_toml
from warmup_base.listen import parse_hostport

__all__ = ["Config", "ConfigError", "load_config"]

_HEADER_NAME = re.compile(r"[!-9;-~]+")     # RFC 5322 field name: printable ASCII but the colon


@dataclass
class MtaSection:
    hostname: str = ""                 # required: no name is a safe default for EHLO and Received
    spool_dir: str = "/var/spool/warmup-mta"
    log_level: str = "info"
    # New mail is refused (452 4.3.1) when it would leave less than this free on the spool's file
    # system: a size ("500M"), a share ("2%") or a list of both (the larger wins).
    min_free_space: FreeSpaceReserve = FreeSpaceReserve(100 * 1024 * 1024)
    # A file of this size kept in the spool and given back when the disk fills, so deliveries can
    # still be recorded; counted as part of the reserve. 0: none.
    spool_ballast: ByteSize = ByteSize(16 * 1024 * 1024)


@dataclass
class SubmissionSection:
    listen: list[str] = field(default_factory=lambda: ["127.0.0.1:2525"])
    trusted_networks: list[str] = field(default_factory=lambda: ["127.0.0.0/8"])
    max_message_size: ByteSize = ByteSize(25 * 1024 * 1024)
    max_recipients: int = 1000
    max_line_length: int = 998          # octets without CRLF (RFC 5321 4.5.3.1.6)
    max_connections: int = 1000
    max_connections_per_ip: int = 100
    # Slots of max_connections only trusted_networks may take (at most half of them); when the
    # listener is full, the longest-idle session that is neither trusted nor authenticated is
    # closed to make room. Applies to the inbound listener too.
    reserved_connections: int = 50
    # Idle time allowed before the first MAIL to untrusted, unauthenticated sessions (0: the
    # command_timeout); after MAIL, command_timeout.
    pre_mail_timeout: Duration = Duration(30)
    command_timeout: Duration = Duration(300)
    data_timeout: Duration = Duration(600)
    tls_cert: str = ""
    tls_key: str = ""
    users_file: str = ""
    loopback_plain_auth: bool = True    # loopback clients may AUTH without STARTTLS (nothing crosses a wire)
    stream_header: str = "X-Stream"     # header an app may set to choose its stream
    campaign_header: str = "X-Campaign"  # header naming the message's campaign (tag), for culprit isolation
    default_stream: str = "transactional"
    group_commit_delay: Duration = Duration(0.002)


@dataclass
class InboundSection:
    listen: list[str] = field(default_factory=lambda: ["127.0.0.1:2526"])
    bounce_domain: str = "bounces.localhost"
    aligned_bounce_subdomain: str = ""  # e.g. "bounces": return path at bounces.<sending domain>
    verp_secret: str = ""               # HMAC key for VERP return paths; or verp_secret_file
    verp_secret_file: str = ""
    feedback_addresses: list[str] = field(default_factory=list)
    max_message_size: ByteSize = ByteSize(10 * 1024 * 1024)


@dataclass
class DnsSection:
    nameservers: list[str] = field(default_factory=list)
    timeout: Duration = Duration(5)


@dataclass
class SiteLimitRule:
    """Static shaping for sites whose MX host (or recipient domain) matches `match` (a glob)."""
    match: str
    max_connections: int = 10
    messages_per_connection: int = 100
    rate_per_minute: float = 0.0
    burst: int = 0


@dataclass
class DeliverySection:
    port: int = 25
    connect_timeout: Duration = Duration(30)
    command_timeout: Duration = Duration(300)
    idle_timeout: Duration = Duration(5)
    starttls: bool = True               # use STARTTLS when the MX offers it
    max_connections: int = 10           # default per (site, source)
    messages_per_connection: int = 100
    rate_per_minute: float = 0.0        # default per (site, source); 0 = unlimited
    site: list[SiteLimitRule] = field(default_factory=list)


@dataclass
class QueueSection:
    retry_base: Duration = Duration(60)
    retry_factor: float = 2.0
    retry_max: Duration = Duration(4 * 3600)
    retry_jitter: float = 0.2
    max_age: Duration = Duration(5 * 86400)
    delay_warning: Duration = Duration(0)   # 0 = no "delayed" DSN
    domain_window: int = 2000           # jobs per recipient domain held in memory
    memory_jobs: int = 100_000          # jobs held in memory over all domains; the rest waits on disk
    body_cache: ByteSize = ByteSize(64 * 1024 * 1024)


@dataclass
class SuppressionSection:
    soft_bounce_ttl: Duration = Duration(3 * 86400)     # how long a soft bounce holds an address back
    # Soft reasons that mean "the mailbox cannot take mail now" (the others, like blocked, say
    # nothing about the address and suppress nothing).
    soft_reasons: list[str] = field(default_factory=lambda: ["mailboxfull", "suspend", "exceedlimit"])
    complaint_scope: str = "tenant"     # tenant | global: whom a complaint suppresses the address for
    delivery_log_days: float = 7.0      # how long deliveries are remembered to attribute late bounces


@dataclass
class StreamSection:
    priority: int = 5                   # lower goes first
    pool: str = "default"


@dataclass
class EgressSource:
    name: str
    address: str
    ehlo: str = ""
    weight: int = 1


@dataclass
class EgressPool:
    sources: list[str]
    relay: str = ""                     # a [relays.NAME] to deliver through instead of MX lookup


@dataclass
class EgressSection:
    sources: list[EgressSource] = field(default_factory=list)
    pools: dict[str, EgressPool] = field(default_factory=dict)


@dataclass
class EventsSection:
    path: str = ""                      # JSON Lines; default <spool_dir>/events.jsonl
    redis: str = ""                     # "redis://host:port/db": also XADD every event to a Redis Stream
    redis_stream: str = "warmup-mta:events"
    redis_maxlen: int = 1_000_000       # approximate cap of the stream's length (XADD MAXLEN ~)
    redis_buffer: int = 100_000         # events held in memory while Redis is unreachable; then dropped


@dataclass
class PolicySection:
    address: str = ""                   # "host:port" or "unix:/path"; empty = static limits
    transactional_floor: int = 0        # messages/minute per site when policyd is unreachable
    # Kept for old configs: lanes and grant requests are per sender mailbox always since issue 18
    # (policyd pauses a single sender through the grant request's mailbox).
    mailbox_lanes: bool = False


@dataclass
class MetricsSection:
    listen: str = ""
    queue_interval: Duration = Duration(30)     # how often the on-disk queue gauges are recounted
    queue_sites: int = 50                       # sites with their own queue gauges; the rest are "_other"


@dataclass
class ApiSection:
    listen: str = ""                    # "host:port" of the private HTTP API; "" = off
    max_body: ByteSize = ByteSize(10 * 1024 * 1024)    # larger request bodies get 413
    event_retention: Duration = Duration(7 * 86400)   # how long /v1/events and message status keep events
    idempotency_ttl: Duration = Duration(86400)       # how long an Idempotency-Key's first answer is kept
    max_schedule_ahead: Duration = Duration(30 * 86400)  # the furthest send_at accepted
    console_session: Duration = Duration(12 * 3600)   # how long a console log-in lasts


@dataclass
class Config:
    mta: MtaSection = field(default_factory=MtaSection)
    submission: SubmissionSection = field(default_factory=SubmissionSection)
    inbound: InboundSection = field(default_factory=InboundSection)
    dns: DnsSection = field(default_factory=DnsSection)
    delivery: DeliverySection = field(default_factory=DeliverySection)
    queue: QueueSection = field(default_factory=QueueSection)
    streams: dict[str, StreamSection] = field(default_factory=dict)
    egress: EgressSection = field(default_factory=EgressSection)
    relays: dict[str, RelaySection] = field(default_factory=dict)
    events: EventsSection = field(default_factory=EventsSection)
    suppression: SuppressionSection = field(default_factory=SuppressionSection)
    dkim: DkimSection = field(default_factory=DkimSection)
    unsubscribe: UnsubscribeConfig = field(default_factory=UnsubscribeConfig)
    policy: PolicySection = field(default_factory=PolicySection)
    metrics: MetricsSection = field(default_factory=MetricsSection)
    tracking: TrackingSection = field(default_factory=TrackingSection)
    engagement: EngagementSection = field(default_factory=EngagementSection)
    webhooks: list[WebhookEndpoint] = field(default_factory=list)
    api: ApiSection = field(default_factory=ApiSection)
    path: str = ""                      # the file this came from

    # ---- derived views used by the daemon
    @property
    def spool_path(self) -> str:
        return self.mta.spool_dir

    @property
    def engagement_path(self) -> str:
        return self.engagement.path or os.path.join(self.mta.spool_dir, "engagement.db")

    @property
    def events_path(self) -> str:
        return self.events.path or os.path.join(self.mta.spool_dir, "events.jsonl")

    def stream(self, name: str) -> StreamSection:
        return self.streams.get(name) or self.streams[self.submission.default_stream]

    def pool_sources(self, pool: str) -> list[EgressSource]:
        by_name = {s.name: s for s in self.egress.sources}
        return [by_name[n] for n in self.egress.pools[pool].sources]

    def site_limits(self, site_key: str, mx_hosts: tuple[str, ...]) -> SiteLimits:
        d = self.delivery
        for rule in d.site:
            if any(fnmatch.fnmatch(h, rule.match) for h in mx_hosts) or fnmatch.fnmatch(site_key, rule.match):
                return SiteLimits(rule.max_connections, rule.messages_per_connection,
                                  rule.rate_per_minute, rule.burst)
        return SiteLimits(d.max_connections, d.messages_per_connection, d.rate_per_minute)

    def bounce_domains(self) -> BounceDomains:
        """Where our VERP return paths live (the bounce domain, and aligned subdomains if set)."""
        return BounceDomains(self.inbound.bounce_domain, self.inbound.aligned_bounce_subdomain)

    def verp_key(self) -> bytes:
        if self.inbound.verp_secret:
            return self.inbound.verp_secret.encode()
        if self.inbound.verp_secret_file:
            with open(self.inbound.verp_secret_file, "rb") as f:
                return f.read().strip()
        # No secret configured: derive a stable one kept in the spool, created on first start.
        return b""


def load_config(path: str) -> Config:
    cfg = build(Config, read_toml(path), "")
    cfg.path = os.path.abspath(path)
    _resolve_paths(cfg, os.path.dirname(cfg.path))
    _apply_defaults(cfg)
    validate(cfg)
    return cfg


def _resolve_paths(cfg: Config, base: str) -> None:
    def absolute(p: str) -> str:
        return p if not p or os.path.isabs(p) else os.path.normpath(os.path.join(base, p))

    cfg.mta.spool_dir = absolute(cfg.mta.spool_dir)
    cfg.submission.tls_cert = absolute(cfg.submission.tls_cert)
    cfg.submission.tls_key = absolute(cfg.submission.tls_key)
    cfg.submission.users_file = absolute(cfg.submission.users_file)
    cfg.inbound.verp_secret_file = absolute(cfg.inbound.verp_secret_file)
    cfg.events.path = absolute(cfg.events.path)
    cfg.engagement.path = absolute(cfg.engagement.path)
    t = cfg.tracking
    t.secret_file, t.tls_cert, t.tls_key = absolute(t.secret_file), absolute(t.tls_cert), absolute(t.tls_key)
    for relay in cfg.relays.values():
        relay.password_file, relay.ca_file = absolute(relay.password_file), absolute(relay.ca_file)
    for key in cfg.dkim.keys:
        key.domain = key.domain.lower().rstrip(".")
        key.key_file = absolute(key.key_file)
    u = cfg.unsubscribe
    u.tls_cert, u.tls_key, u.secret_file = absolute(u.tls_cert), absolute(u.tls_key), absolute(u.secret_file)
    if cfg.policy.address.startswith("unix:"):
        cfg.policy.address = "unix:" + absolute(cfg.policy.address[5:])


def _apply_defaults(cfg: Config) -> None:
    """Fills what an empty config leaves open: the two usual streams and one default pool."""
    cfg.streams.setdefault("transactional", StreamSection(priority=0))
    cfg.streams.setdefault("marketing", StreamSection(priority=5))
    if not cfg.egress.sources:
        # No source IP configured: let the kernel choose, greet with the MTA hostname.
        cfg.egress.sources.append(EgressSource(name="default", address="", ehlo=cfg.mta.hostname))
    for s in cfg.egress.sources:
        s.ehlo = s.ehlo or cfg.mta.hostname
    if not cfg.egress.pools:
        cfg.egress.pools["default"] = EgressPool(sources=[s.name for s in cfg.egress.sources])
    if not cfg.unsubscribe.mailto_domain:
        cfg.unsubscribe.mailto_domain = cfg.inbound.bounce_domain


def require_serving_keys(cfg: Config) -> None:
    """What `serve` (and `check-config`) need beyond a valid file: keys with no safe default. The
    queue and suppression commands work without them."""
    if not cfg.mta.hostname:
        raise ConfigError("mta.hostname: required: the name this MTA greets with (EHLO) and writes in Received "
                          "headers; make it the reverse DNS name of its sending address")


def validate(cfg: Config) -> None:
    check_log_level(cfg.mta.log_level, "mta.log_level")
    for i, addr in enumerate(cfg.submission.listen):
        parse_hostport(addr, f"submission.listen[{i}]")
    for i, addr in enumerate(cfg.inbound.listen):
        parse_hostport(addr, f"inbound.listen[{i}]")
    for i, net in enumerate(cfg.submission.trusted_networks):
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            raise ConfigError(f"submission.trusted_networks[{i}]: not a network: {net!r}") from None
    for i, ns in enumerate(cfg.dns.nameservers):
        host, _port = parse_hostport(ns, f"dns.nameservers[{i}]", default_port=53)
        _require_ip(host, f"dns.nameservers[{i}]")
    if cfg.metrics.listen:
        parse_hostport(cfg.metrics.listen, "metrics.listen")
    if cfg.api.listen:
        parse_hostport(cfg.api.listen, "api.listen")
    for key in ("max_body", "event_retention", "idempotency_ttl", "max_schedule_ahead", "console_session"):
        if getattr(cfg.api, key) <= 0:
            raise ConfigError(f"api.{key}: must be positive, got {getattr(cfg.api, key)}")
    if cfg.metrics.queue_interval <= 0:
        raise ConfigError(f"metrics.queue_interval: must be positive, got {cfg.metrics.queue_interval}")
    if cfg.metrics.queue_sites < 0:
        raise ConfigError(f"metrics.queue_sites: must be 0 or more, got {cfg.metrics.queue_sites}")
    if cfg.policy.address and not cfg.policy.address.startswith("unix:"):
        parse_hostport(cfg.policy.address, "policy.address")
    if not 0 < cfg.delivery.port <= 65535:
        raise ConfigError(f"delivery.port: not a port number: {cfg.delivery.port}")
    if bool(cfg.submission.tls_cert) != bool(cfg.submission.tls_key):
        raise ConfigError("submission.tls_cert / submission.tls_key: give both or neither")
    for key in ("tls_cert", "tls_key", "users_file"):
        p = getattr(cfg.submission, key)
        if p and not os.path.isfile(p):
            raise ConfigError(f"submission.{key}: no such file: {p}")
    for key, value in (("submission.max_recipients", cfg.submission.max_recipients),
                       ("submission.max_connections", cfg.submission.max_connections),
                       ("submission.max_connections_per_ip", cfg.submission.max_connections_per_ip),
                       ("delivery.max_connections", cfg.delivery.max_connections),
                       ("delivery.messages_per_connection", cfg.delivery.messages_per_connection),
                       ("queue.domain_window", cfg.queue.domain_window),
                       ("queue.memory_jobs", cfg.queue.memory_jobs)):
        if value < 1:
            raise ConfigError(f"{key}: must be at least 1, got {value}")
    if cfg.submission.reserved_connections < 0:
        raise ConfigError("submission.reserved_connections: must be 0 or more, "
                          f"got {cfg.submission.reserved_connections}")
    if cfg.submission.max_line_length < 78:
        raise ConfigError("submission.max_line_length: must be at least 78")
    if cfg.queue.retry_factor < 1.0:
        raise ConfigError("queue.retry_factor: must be at least 1.0")
    if not 0.0 <= cfg.queue.retry_jitter < 1.0:
        raise ConfigError("queue.retry_jitter: must be between 0 and 1")
    if cfg.queue.max_age <= 0:
        raise ConfigError("queue.max_age: must be positive")
    for key in ("stream_header", "campaign_header"):      # "" = no such header
        name = getattr(cfg.submission, key)
        if name and not _HEADER_NAME.fullmatch(name):
            raise ConfigError(f"submission.{key}: not a header field name: {name!r}")
    campaign_header = cfg.submission.campaign_header.lower()
    if campaign_header and campaign_header == cfg.submission.stream_header.lower():
        raise ConfigError("submission.campaign_header: must differ from submission.stream_header")
    if cfg.submission.default_stream not in cfg.streams:
        raise ConfigError(f"submission.default_stream: no stream named {cfg.submission.default_stream!r}")
    names = set()
    for i, src in enumerate(cfg.egress.sources):
        if src.name in names:
            raise ConfigError(f"egress.sources[{i}].name: duplicate source name {src.name!r}")
        names.add(src.name)
        if src.address:
            _require_ip(src.address, f"egress.sources[{i}].address")
        if src.weight < 1:
            raise ConfigError(f"egress.sources[{i}].weight: must be at least 1")
    for pname, pool in cfg.egress.pools.items():
        if not pool.sources:
            raise ConfigError(f"egress.pools.{pname}.sources: a pool needs at least one source")
        for j, sname in enumerate(pool.sources):
            if sname not in names:
                raise ConfigError(f"egress.pools.{pname}.sources[{j}]: no source named {sname!r}")
    validate_relays(cfg.relays, cfg.egress.pools)
    for sname, stream in cfg.streams.items():
        if stream.pool not in cfg.egress.pools:
            raise ConfigError(f"streams.{sname}.pool: no egress pool named {stream.pool!r}")
    validate_dkim_section(cfg.dkim)
    for i, key in enumerate(cfg.dkim.keys):
        if not os.path.isfile(key.key_file):
            raise ConfigError(f"dkim.keys[{i}].key_file: no such file: {key.key_file}")
    validate_unsubscribe_config(cfg.unsubscribe)
    for i, stream in enumerate(cfg.unsubscribe.streams):
        if stream not in cfg.streams:
            raise ConfigError(f"unsubscribe.streams[{i}]: no stream named {stream!r}")
    validate_tracking_section(cfg.tracking, set(cfg.streams))
    validate_engagement_section(cfg.engagement, set(cfg.streams))
    if cfg.suppression.complaint_scope not in ("tenant", "global"):
        raise ConfigError("suppression.complaint_scope: one of tenant, global")
    if not cfg.inbound.bounce_domain or "." not in cfg.inbound.bounce_domain:
        raise ConfigError("inbound.bounce_domain: must be a domain name")
    validate_webhooks(cfg.webhooks)
    ev = cfg.events
    validate_event_stream(ev.redis, ev.redis_stream, ev.redis_maxlen, ev.redis_buffer)


def _require_ip(value: str, key: str) -> None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ConfigError(f"{key}: not an IP address: {value!r}") from None
