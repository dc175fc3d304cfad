"""Addresses in configs: "host:port" (TCP) and "unix:/path" (a Unix stream socket), with errors
that name the key."""

from __future__ import annotations

from warmup_base.configload import ConfigError


def parse_hostport(value: str, key: str, default_port: int | None = None) -> tuple[str, int]:
    """("host", port); `default_port` when the value has none (else that is an error)."""
    host, sep, port = value.rpartition(":")
    if not sep:
        if default_port is None:
            raise ConfigError(f"{key}: expected host:port, got {value!r}")
        host, port = value, str(default_port)
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{key}: expected host:port, got {value!r}")
    return host, int(port)


def parse_listen(value: str, key: str) -> tuple[str, int] | str:
    """("host", port) for TCP, or the socket path for "unix:/path"."""
    if value.startswith("unix:"):
        if not value[5:]:
            raise ConfigError(f"{key}: expected unix:/path/to/socket, got {value!r}")
        return value[5:]
    return parse_hostport(value, key)
