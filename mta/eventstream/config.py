"""Checks of the `[events]` keys of the Redis Stream (`redis`, `redis_stream`, `redis_maxlen`,
`redis_buffer`); errors name the key."""

from __future__ import annotations

from urllib.parse import urlsplit

from warmup_base.configload import ConfigError


def validate_event_stream(url: str, stream: str, maxlen: int, buffer: int) -> None:
    if not url:
        return
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix") or not (parts.hostname or parts.path):
        raise ConfigError(f"events.redis: a redis://host:port/db, rediss:// or unix:// URL, got {url!r}")
    if not stream.strip():
        raise ConfigError("events.redis_stream: the stream's key must not be empty")
    if maxlen < 1:
        raise ConfigError(f"events.redis_maxlen: must be at least 1, got {maxlen}")
    if buffer < 1:
        raise ConfigError(f"events.redis_buffer: must be at least 1, got {buffer}")
