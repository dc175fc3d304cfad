"""`[[webhooks]]`: one table per endpoint, validated at start-up with errors naming the key."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from mta.webhooks.signing import InvalidSecret, parse_secret
from warmup_base.configload import ConfigError, Duration

__all__ = ["WebhookEndpoint", "validate_webhooks"]

_EVENT_NAME = re.compile(r"[a-z][a-z0-9_.]*")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/@-]*")


@dataclass
class WebhookEndpoint:
    url: str                            # http:// or https://
    secret: str                         # "whsec_" + base64 of 24-64 random bytes (Standard Webhooks)
    tenant: str = ""                    # only this tenant's events; "" = all tenants
    events: list[str] = field(default_factory=list)     # only these event names; empty = all
    # Names the endpoint in the outbox and in metric labels; default: the URL without its query.
    # Rows in the outbox belong to a name: keep it when the URL changes to keep the backlog.
    name: str = ""
    batch_size: int = 100               # events per POST, at most
    timeout: Duration = Duration(15)    # one POST, connect to the end of the answer
    max_age: Duration = Duration(86400)     # events not delivered by then are dropped (logged, counted)
    retry_base: Duration = Duration(5)      # first retry after about this; doubled after each failure
    retry_max: Duration = Duration(1800)    # longest wait between two tries
    # Events held in the outbox for this endpoint, at most; past it new ones are dropped (counted)
    # so a long outage cannot fill the spool's disk.
    max_backlog: int = 1_000_000


def default_name(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"


def validate_webhooks(endpoints: list[WebhookEndpoint]) -> None:
    """Checks each endpoint and fills in default names; raises ConfigError naming the bad key."""
    seen: dict[str, int] = {}
    for i, ep in enumerate(endpoints):
        key = f"webhooks[{i}]"
        parts = urlsplit(ep.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"{key}.url: an http:// or https:// URL with a host, got {ep.url!r}")
        try:
            parse_secret(ep.secret)
        except InvalidSecret as exc:
            raise ConfigError(f"{key}.secret: {exc}") from None
        for j, name in enumerate(ep.events):
            if not _EVENT_NAME.fullmatch(name):
                raise ConfigError(f"{key}.events[{j}]: not an event name: {name!r}")
        if not ep.name:
            ep.name = default_name(ep.url)
        elif not _NAME.fullmatch(ep.name):
            raise ConfigError(f"{key}.name: letters, digits and _.:/@- only, got {ep.name!r}")
        if ep.name in seen:
            raise ConfigError(f"{key}.name: webhooks[{seen[ep.name]}] has the same name {ep.name!r} "
                              "(default: the URL without its query); give each endpoint its own name")
        seen[ep.name] = i
        if not 1 <= ep.batch_size <= 10_000:
            raise ConfigError(f"{key}.batch_size: between 1 and 10000, got {ep.batch_size}")
        if ep.max_backlog < 1:
            raise ConfigError(f"{key}.max_backlog: must be at least 1, got {ep.max_backlog}")
        for attr in ("timeout", "max_age", "retry_base", "retry_max"):
            if getattr(ep, attr) <= 0:
                raise ConfigError(f"{key}.{attr}: must be positive")
        if ep.retry_max < ep.retry_base:
            raise ConfigError(f"{key}.retry_max: must be at least retry_base ({ep.retry_base:g}s)")
