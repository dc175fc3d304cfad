"""Turns TOML tables into typed dataclasses, with errors that name the bad key.

Shared by the MTA's config and anything else that loads TOML into dataclasses. Unknown keys are
errors too: a typo in a key name must not silently fall back to a default.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import types
import typing
from dataclasses import dataclass
from typing import Any, TypeVar, get_args, get_origin, get_type_hints

T = TypeVar("T")


class ConfigError(ValueError):
    """A config value is missing, unknown or of the wrong type; the message names the key."""


class Duration(float):
    """Seconds; TOML may give a number or a string such as "90s", "15m", "4h", "5d"."""


class ByteSize(int):
    """Bytes; TOML may give a number or a string such as "512K", "25M", "1G"."""


@dataclass(frozen=True)
class _Quantity:
    """A number with an optional unit suffix, as config values of one kind are written."""

    kind: str                      # "duration", "size"
    units: dict[str, int]
    pattern: re.Pattern[str]       # group 1: the number, group 2: the unit
    numbers: tuple[type, ...]      # plain TOML numbers accepted as they are
    examples: str                  # for error messages


_DURATION = _Quantity("duration", {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800},
                      re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*"), (int, float), "30s, 15m, 4h or 5d")
_SIZE = _Quantity("size", {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3},
                  re.compile(r"\s*(\d+)\s*([kmg]?)b?\s*"), (int,), "512K, 25M or 1G")


def _parse_quantity(q: _Quantity, value: Any, key: str) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{key}: expected a {q.kind} such as {q.examples}, got {value!r}")
    if isinstance(value, q.numbers):
        amount = float(value)
    elif isinstance(value, str):
        m = q.pattern.fullmatch(value.lower())
        if not m:
            raise ConfigError(f"{key}: expected a {q.kind} such as {q.examples}, got {value!r}")
        amount = float(m.group(1)) * q.units[m.group(2)]
    else:
        raise ConfigError(f"{key}: expected a {q.kind}, got {type(value).__name__}")
    if amount < 0:
        raise ConfigError(f"{key}: must not be negative")
    return amount


def parse_duration(value: Any, key: str) -> Duration:
    return Duration(_parse_quantity(_DURATION, value, key))


def parse_size(value: Any, key: str) -> ByteSize:
    return ByteSize(int(_parse_quantity(_SIZE, value, key)))


def read_toml(path: str, what: str = "config") -> dict[str, Any]:
    """The TOML document at `path`; unreadable or invalid files raise ConfigError saying why."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def merge_tables(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """Tables merge key by key; any other value in `top` replaces the one in `base`."""
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_tables(merged[key], value)
        else:
            merged[key] = value
    return merged


def build(cls: type[T], table: Any, key: str) -> T:
    """Builds dataclass `cls` from a TOML table; `key` is the dotted path used in errors."""
    if not isinstance(table, dict):
        raise ConfigError(f"{key or 'config'}: expected a table, got {type(table).__name__}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for name in table:
        if name not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(f"{_join(key, name)}: unknown key (known keys: {known})")
    values: dict[str, Any] = {}
    for name, f in fields.items():
        if name in table:
            values[name] = convert(hints[name], table[name], _join(key, name))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{_join(key, name)}: required key is missing")
    return cls(**values)


def convert(tp: Any, value: Any, key: str) -> Any:
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return convert(args[0], value, key)
    if tp is Duration:
        return parse_duration(value, key)
    if tp is ByteSize:
        return parse_size(value, key)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__}")
        (item_tp, *_rest) = get_args(tp)
        items = [convert(item_tp, v, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a table, got {type(value).__name__}")
        _k, item_tp = get_args(tp)
        return {k: convert(item_tp, v, _join(key, k)) for k, v in value.items()}
    from_config = getattr(tp, "from_config", None)     # a value type that parses itself
    if from_config is not None:
        return from_config(value, key)
    if dataclasses.is_dataclass(tp):
        return build(tp, value, key)  # type: ignore[arg-type]
    raise TypeError(f"unsupported config type {tp!r} for {key}")


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


LOG_LEVELS = ("debug", "info", "warning", "error")


def check_log_level(value: str, key: str) -> None:
    """Both daemons accept the same log levels, named the same way."""
    if value.lower() not in LOG_LEVELS:
        raise ConfigError(f"{key}: one of {', '.join(LOG_LEVELS)}; got {value!r}")


def unwritable_dir(path: str) -> str | None:
    """Why the daemon could not write in directory `path` (made at start when missing), or None."""
    probe = path
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        return f"{probe} is not a directory"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"{probe} is not writable by this user (uid {os.getuid()})"
    return None
