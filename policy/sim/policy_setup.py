"""The engine settings a simulation runs with: the policyd config, with the scenario's [policy] on top.

The same loader as `policyd serve` reads the config (includes, defaults, validation), so a
simulation runs the schedules and rules an operator is about to deploy. A scenario may layer
changes over them to try an alternative before deploying it: tables (warmup, leases, rules,
classes) merge key by key, schedules, tenants and pools replace by name, sources and domains replace or
add by name, and mailbox rules go first (the first matching rule wins). The result is validated
again by policyd's own validator, so a bad override fails like a bad config would.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from policy.config import Config, load_config, validate
from policy.engine.settings import (
    ClassSettings,
    DomainSettings,
    LeaseSettings,
    MailboxRule,
    PolicySettings,
    PoolSettings,
    RuleSettings,
    ScheduleSettings,
    SourceSettings,
    TenantSettings,
    WarmupSettings,
)
from warmup_base.configload import ConfigError, build, convert

_TABLES: dict[str, type] = {"warmup": WarmupSettings, "leases": LeaseSettings, "rules": RuleSettings,
                            "classes": ClassSettings}
_NAMED_LISTS: dict[str, type] = {"sources": SourceSettings, "domains": DomainSettings}
_KNOWN = (*_TABLES, *_NAMED_LISTS, "schedules", "tenants", "mailboxes", "pools")


def load_policy(config_path: str, overrides: dict[str, Any]) -> Config:
    cfg = load_config(config_path)
    apply_overrides(cfg.policy, overrides)
    try:
        validate(cfg)
    except ConfigError as exc:
        raise ConfigError(f"{config_path} with the scenario's [policy]: {exc}") from None
    return cfg


def apply_overrides(p: PolicySettings, overrides: dict[str, Any]) -> None:
    for key, value in overrides.items():
        if key not in _KNOWN:
            raise ConfigError(f"policy.{key}: unknown key (known keys: {', '.join(sorted(_KNOWN))})")
        where = f"policy.{key}"
        if key in _TABLES:
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: expected a table")
            setattr(p, key, build(_TABLES[key], {**asdict(getattr(p, key)), **value}, where))
        elif key == "schedules":
            p.schedules.update(convert(dict[str, ScheduleSettings], value, where))
        elif key == "tenants":
            p.tenants.update(convert(dict[str, TenantSettings], value, where))
        elif key == "pools":
            p.pools.update(convert(dict[str, PoolSettings], value, where))
        elif key == "mailboxes":
            p.mailboxes = [*convert(list[MailboxRule], value, where), *p.mailboxes]
        else:
            given = convert(list[_NAMED_LISTS[key]], value, where)  # type: ignore[valid-type]
            names = {item.name for item in given}
            setattr(p, key, [item for item in getattr(p, key) if item.name not in names] + given)
