"""policyd's configuration: TOML loaded once into typed dataclasses and validated at start-up.

The file has two daemon tables, [policyd] and [metrics]; every other table is engine settings
(policy.engine.settings.PolicySettings). `[policyd] include` names further TOML files (ISP
definitions, schedules) that are read first, the including file's own values applied on top.
Relative paths (includes, a sqlite:// state file, a unix: socket) resolve against the directory
of the file that names them, so the config works the same from a shell and under systemd.
Errors name the bad key.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

from policy.engine.isp import OTHER
from policy.engine.settings import PolicySettings
from policy.engine.state import ANY_ISP
from policy.store import StoreError, sqlite_path
from warmup_base.configload import ByteSize, ConfigError, Duration, build, check_log_level, merge_tables, read_toml
from warmup_base.listen import parse_hostport, parse_listen

__all__ = ["Config", "ConfigError", "load_config"]


@dataclass
class PolicydSection:
    listen: str = "127.0.0.1:7025"          # "host:port" or "unix:/path/to/socket"
    also_listen: list[str] = field(default_factory=list)   # more sockets, same forms
    state: str = "sqlite:///var/lib/warmup-mta/policy.db"  # or "redis://host:port/db"
    state_prefix: str = "policyd:"          # Redis key prefix (several deployments, one Redis)
    include: list[str] = field(default_factory=list)
    log_level: str = "info"
    cache_seconds: Duration = 1.0  # how stale a pair state may be on the grant path
    history_limit: int = 100000              # actions kept
    max_message: ByteSize = 4 * 1024 * 1024   # longest protocol line accepted
    drain_timeout: Duration = 10   # on SIGTERM, wait this long for requests in flight


@dataclass
class MetricsSection:
    listen: str = ""                         # "host:port" for Prometheus /metrics; "" = off


@dataclass
class Config:
    policyd: PolicydSection = field(default_factory=PolicydSection)
    metrics: MetricsSection = field(default_factory=MetricsSection)
    policy: PolicySettings = field(default_factory=PolicySettings)
    path: str = ""
    base_dir: str = ""

    @property
    def listen_addresses(self) -> list[str]:
        return [self.policyd.listen, *self.policyd.also_listen]


def _with_includes(path: str, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    path = os.path.abspath(path)
    if path in seen:
        raise ConfigError(f"{seen[-1]}: policyd.include: {path} includes itself")
    raw = read_toml(path)
    includes = raw.get("policyd", {}).get("include", []) if isinstance(raw.get("policyd"), dict) else []
    if not isinstance(includes, list) or not all(isinstance(i, str) for i in includes):
        raise ConfigError(f"{path}: policyd.include: expected a list of file names")
    merged: dict[str, Any] = {}
    for name in includes:
        full = name if os.path.isabs(name) else os.path.join(os.path.dirname(path), name)
        merged = merge_tables(merged, _with_includes(full, (*seen, path)))
    return merge_tables(merged, raw)


def load_config(path: str) -> Config:
    raw = _with_includes(path)
    daemon = raw.pop("policyd", {})
    metrics = raw.pop("metrics", {})
    warmup_keys = raw.get("warmup", {}) if isinstance(raw.get("warmup"), dict) else {}
    cfg = Config(policyd=build(PolicydSection, daemon, "policyd"),
                 metrics=build(MetricsSection, metrics, "metrics"),
                 policy=build(PolicySettings, raw, ""),
                 path=os.path.abspath(path))
    _default_schedules_only_if_defined(cfg.policy, warmup_keys)
    cfg.base_dir = os.path.dirname(cfg.path)
    _resolve_paths(cfg)
    validate(cfg)
    return cfg


def _default_schedules_only_if_defined(p: PolicySettings, given: dict[str, Any]) -> None:
    """A config that defines no schedule of the default name and does not ask for one runs no
    warm-up buckets (connection shaping only), instead of failing: a minimal config such as
    `[policyd] listen/state` must start. The shipped conf/policy.toml defines the schedules."""
    w = p.warmup
    for key in ("ip_schedule", "domain_schedule"):
        if key not in given and getattr(w, key) not in p.schedules:
            setattr(w, key, "")


def _resolve_paths(cfg: Config) -> None:
    d = cfg.policyd
    if d.state.startswith("sqlite://"):
        try:
            d.state = "sqlite://" + sqlite_path(d.state, cfg.base_dir)
        except StoreError as exc:
            raise ConfigError(f"policyd.state: {exc}") from None

    def absolute(address: str) -> str:
        if address.startswith("unix:") and not os.path.isabs(address[5:]):
            return "unix:" + os.path.normpath(os.path.join(cfg.base_dir, address[5:]))
        return address

    d.listen = absolute(d.listen)
    d.also_listen = [absolute(a) for a in d.also_listen]


def validate(cfg: Config) -> None:
    d, p = cfg.policyd, cfg.policy
    if p.rules.recovery_step:
        logging.getLogger("policyd").warning(
            "rules.recovery_step is no longer used: after a throttle the rate doubles every "
            "rules.recovery_interval back to where it was; remove the key")
    parse_listen(d.listen, "policyd.listen")
    for i, a in enumerate(d.also_listen):
        parse_listen(a, f"policyd.also_listen[{i}]")
    if not d.state.startswith(("sqlite://", "redis://", "rediss://", "unix://", "memory://")):
        raise ConfigError(f"policyd.state: expected sqlite:///path or redis://host:port/db, got {d.state!r}")
    check_log_level(d.log_level, "policyd.log_level")
    _at_least("policyd.history_limit", d.history_limit, 1)
    _at_least("policyd.max_message", d.max_message, 1024)
    if cfg.metrics.listen:
        parse_hostport(cfg.metrics.listen, "metrics.listen")
    _validate_policy(p)


def _at_least(key: str, value: float, minimum: float) -> None:
    if value < minimum:
        raise ConfigError(f"{key}: must be at least {minimum:g}, got {value}")


def _share(key: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{key}: must be a share between 0 and 1, got {value}")


def _validate_policy(p: PolicySettings) -> None:
    w, r = p.warmup, p.rules
    for name, sched in p.schedules.items():
        if not sched.days:
            raise ConfigError(f"schedules.{name}.days: needs at least one day's volume")
        for i, v in enumerate(sched.days):
            if v < 0:
                raise ConfigError(f"schedules.{name}.days[{i}]: must not be negative, got {v}")

    def known_schedule(key: str, name: str, empty_ok: bool = True) -> None:
        if (name or not empty_ok) and name not in p.schedules:
            known = ", ".join(sorted(p.schedules)) or "none"
            raise ConfigError(f"{key}: no schedule named {name!r} (schedules: {known})")

    known_schedule("warmup.ip_schedule", w.ip_schedule)
    known_schedule("warmup.domain_schedule", w.domain_schedule)
    if w.day_length <= 0:
        raise ConfigError("warmup.day_length: must be positive")
    if w.day_start >= 86400:
        raise ConfigError("warmup.day_start: must be less than 24h")
    if not 0 <= w.window_start < w.window_end <= 86400:
        raise ConfigError("warmup.window_start / warmup.window_end: need 0 <= start < end <= 24h")
    if w.burst <= 0:
        raise ConfigError("warmup.burst: must be positive")
    _at_least("warmup.min_burst", w.min_burst, 1)
    _at_least("leases.max_messages", p.leases.max_messages, 1)
    _at_least("rules.health_slots", r.health_slots, 1)
    _share("warmup.advance_min_usage", w.advance_min_usage)
    if p.leases.ttl <= 0:
        raise ConfigError("leases.ttl: must be positive")
    for key in ("health_window", "recovery_interval", "throttle_backoff", "recent_window"):
        if getattr(r, key) <= 0:
            raise ConfigError(f"rules.{key}: must be positive")
    if not 0 < r.throttle_decrease < 1:
        raise ConfigError(f"rules.throttle_decrease: must be between 0 and 1 (exclusive), got {r.throttle_decrease}")
    if not 0 < r.min_factor <= 1:
        raise ConfigError(f"rules.min_factor: must be above 0 and at most 1, got {r.min_factor}")
    if r.confidence_z < 0:
        raise ConfigError(f"rules.confidence_z: must not be negative, got {r.confidence_z}")
    _at_least("rules.min_events", r.min_events, 1)
    _at_least("rules.min_sample", r.min_sample, 1)
    _at_least("warmup.catch_up", w.catch_up, 1)
    _at_least("warmup.rewarm_rollback_days", w.rewarm_rollback_days, 0)
    if w.rewarm_after < 0:
        raise ConfigError("warmup.rewarm_after: must not be negative")
    _share("warmup.advance_min_delivered", w.advance_min_delivered)
    if w.domain_volume not in ("sources", "fixed"):
        raise ConfigError(f"warmup.domain_volume: one of sources, fixed; got {w.domain_volume!r}")
    for key in ("hard_bounce_warn", "hard_bounce_pause", "complaint_hold", "complaint_pause",
                "healthy_max_throttle_rate"):
        _share(f"rules.{key}", getattr(r, key))
    if r.hard_bounce_warn > r.hard_bounce_pause:
        raise ConfigError("rules.hard_bounce_warn: must not exceed rules.hard_bounce_pause")
    if r.complaint_hold > r.complaint_pause:
        raise ConfigError("rules.complaint_hold: must not exceed rules.complaint_pause")
    if r.throttle_backoff_max < r.throttle_backoff:
        raise ConfigError("rules.throttle_backoff_max: must be at least rules.throttle_backoff")
    for key in ("block_rollback_days", "complaint_rollback_days"):
        _at_least(f"rules.{key}", getattr(r, key), 0)
    for name, isp in p.isps.items():
        if name == ANY_ISP or "|" in name:
            raise ConfigError(f"isps.{name}: not a usable ISP name")
        if not isp.mx and name != OTHER:
            raise ConfigError(f"isps.{name}.mx: needs at least one MX host pattern")
        _at_least(f"isps.{name}.max_connections", isp.max_connections, 1)
        _at_least(f"isps.{name}.messages_per_connection", isp.messages_per_connection, 1)
        known_schedule(f"isps.{name}.ip_schedule", isp.ip_schedule)
        known_schedule(f"isps.{name}.domain_schedule", isp.domain_schedule)
    names: set[str] = set()
    for i, src in enumerate(p.sources):
        if not src.name or "|" in src.name or src.name in names:
            raise ConfigError(f"sources[{i}].name: empty, duplicate or containing '|': {src.name!r}")
        names.add(src.name)
        known_schedule(f"sources[{i}].schedule", src.schedule)
        _at_least(f"sources[{i}].start_day", src.start_day, 0)
        _at_least(f"sources[{i}].weight", src.weight, 1)
    for i, dom in enumerate(p.domains):
        if not dom.name or "|" in dom.name:
            raise ConfigError(f"domains[{i}].name: not a domain name: {dom.name!r}")
        known_schedule(f"domains[{i}].schedule", dom.schedule)
        _at_least(f"domains[{i}].start_day", dom.start_day, 0)
    for i, mb in enumerate(p.mailboxes):
        if not mb.match:
            raise ConfigError(f"mailboxes[{i}].match: needs a pattern such as \"*@outreach.example\"")
        known_schedule(f"mailboxes[{i}].schedule", mb.schedule, empty_ok=False)
        _at_least(f"mailboxes[{i}].start_day", mb.start_day, 0)
    for name, pool in p.pools.items():
        if pool.overflow and pool.overflow not in p.pools:
            raise ConfigError(f"pools.{name}.overflow: no pool named {pool.overflow!r} (pools: "
                              f"{', '.join(sorted(p.pools))})")
        if pool.overflow == name:
            raise ConfigError(f"pools.{name}.overflow: a pool cannot overflow into itself")
        if pool.overflow and not p.pools[pool.overflow].sources:
            raise ConfigError(f"pools.{pool.overflow}.sources: a pool used as an overflow lists its sources")
        if pool.overflow_after < 0:
            raise ConfigError(f"pools.{name}.overflow_after: must not be negative")
    for name, tenant in p.tenants.items():
        _at_least(f"tenants.{name}.daily_quota", tenant.daily_quota, 0)
