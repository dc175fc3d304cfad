"""Which engagement store a configuration uses: SQLite (`<spool_dir>/engagement.db`), or Redis
when nodes share it (`[engagement] redis`).

With Redis, the SQLite file stays as this node's mirror: the engaged-first claim (SpoolStore.claim)
ranks queued recipients with an SQL join on it, which Redis cannot take part in. Every activity is
written to both; reads (`mta engagement show`, the score) come from Redis. The ranking thus knows
what this node recorded: its deliveries, and the opens and clicks its tracking listener saw."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from mta.config import Config
from mta.engagement.score import EngagementRecord, EngagementRules
from mta.engagement.store import Activity, EngagementStore

__all__ = ["EngagementStoreLike", "MirroredStore", "open_engagement_store"]


class EngagementStoreLike(Protocol):
    def record(self, activities: Iterable[Activity]) -> int: ...
    def get(self, address: str, now: float) -> EngagementRecord | None: ...
    def get_many(self, addresses: Sequence[str], now: float) -> dict[str, EngagementRecord]: ...
    def erase(self, address: str) -> int: ...
    def close(self) -> None: ...


class MirroredStore:
    """Redis as the shared truth, the local SQLite file as the ranking's mirror."""

    def __init__(self, primary: EngagementStoreLike, mirror: EngagementStore) -> None:
        self.primary = primary
        self.mirror = mirror
        self.path = mirror.path

    def record(self, activities: Iterable[Activity]) -> int:
        batch = list(activities)
        self.mirror.record(batch)
        return self.primary.record(batch)

    def get(self, address: str, now: float) -> EngagementRecord | None:
        return self.primary.get(address, now)

    def get_many(self, addresses: Sequence[str], now: float) -> dict[str, EngagementRecord]:
        return self.primary.get_many(addresses, now)

    def erase(self, address: str) -> int:
        return self.primary.erase(address) + self.mirror.erase(address)

    def close(self) -> None:
        try:
            self.primary.close()
        finally:
            self.mirror.close()


def open_engagement_store(cfg: Config) -> EngagementStoreLike:
    e = cfg.engagement
    rules = EngagementRules(half_life=float(e.half_life), inactive_after=float(e.inactive_after))
    local = EngagementStore(cfg.engagement_path, rules)
    if not e.redis:
        return local
    from mta.engagement.redis_store import RedisEngagementStore
    return MirroredStore(RedisEngagementStore(e.redis, rules, e.redis_prefix), local)
