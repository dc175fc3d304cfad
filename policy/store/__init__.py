"""State backends behind one interface; `open_store` picks one from a state URL.

- ``sqlite:///abs/path.db`` — an absolute path; ``sqlite:///./rel.db``, ``sqlite:///../rel.db`` or
  ``sqlite://rel.db`` — relative to `base_dir` (policy.config passes the config file's directory).
- ``redis://host:port/db`` (also ``rediss://`` and ``unix://``) — a shared Redis.
- ``memory://`` — process memory, for tests and the simulator.
"""

from __future__ import annotations

import os

from policy.store.base import HEALTH, PAIR, Store, StoreError

__all__ = ["HEALTH", "PAIR", "Store", "StoreError", "open_store", "sqlite_path"]


def sqlite_path(url: str, base_dir: str = "") -> str:
    """The file a sqlite:// URL names, with relative forms resolved against `base_dir`."""
    rest = url[len("sqlite://"):]
    if rest.startswith(("/./", "/../")):
        rest = rest[1:]
    if not rest or rest == "/":
        raise StoreError(f"state {url!r}: no file name after sqlite://")
    if os.path.isabs(rest):
        return rest
    return os.path.normpath(os.path.join(base_dir or os.getcwd(), rest))


def open_store(url: str, base_dir: str = "", prefix: str = "policyd:", history_limit: int = 100000) -> Store:
    if url.startswith("sqlite://"):
        from policy.store.sqlite_store import SqliteStore
        return SqliteStore(sqlite_path(url, base_dir), history_limit)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from policy.store.redis_store import RedisStore
        return RedisStore(url, prefix, history_limit)
    if url.startswith("memory://"):
        from policy.store.memory_store import MemoryStore
        return MemoryStore(history_limit)
    raise StoreError(f"state {url!r}: expected sqlite:///path, redis://host:port/db or memory://")
