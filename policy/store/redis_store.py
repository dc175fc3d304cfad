"""The shared store: Redis, with every read-modify-write done by a Lua script on the server.

Token takes run policy/store/take.lua, so several policyd processes (one per MTA node) sharing one
Redis never grant more together than a bucket holds: cluster-wide per-(IP, ISP) limits. Records
(pair states, health) are JSON strings updated by compare-and-set, retried when another process
wrote in between.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from policy.engine.bucket import BucketState, TakePlan, TakeResult
from policy.engine.model import Action
from policy.store.base import KeyedMutation, Record, Store, StoreError

_TAKE = (Path(__file__).with_name("take.lua")).read_text()
# Compare-and-set of several records: KEYS = the records, then the kind's key index; ARGV = per
# record (expected old value or "" for none, new value, key name). Returns 1/0 per record.
_CAS = """
local index = KEYS[#KEYS]
local done = {}
for i = 1, #KEYS - 1 do
  local expected, new, member = ARGV[3 * i - 2], ARGV[3 * i - 1], ARGV[3 * i]
  local cur = redis.call('GET', KEYS[i])
  if (cur == false and expected == '') or cur == expected then
    redis.call('SET', KEYS[i], new)
    redis.call('SADD', index, member)
    done[i] = 1
  else
    done[i] = 0
  end
end
return done
"""
_BUCKET_TTL = 8 * 86400      # an untouched bucket is full again long before this
_CAS_ATTEMPTS = 50


def _dumps(record: Record) -> str:
    return json.dumps(record, separators=(",", ":"), sort_keys=True)


class RedisStore(Store):
    shared = True

    def __init__(self, url: str, prefix: str = "policyd:", history_limit: int = 100000) -> None:
        self.url = url
        self.prefix = prefix
        self.history_limit = history_limit
        self._redis = aioredis.Redis.from_url(url, decode_responses=True, socket_timeout=5.0,
                                              socket_connect_timeout=5.0)
        self._take = self._redis.register_script(_TAKE)
        self._cas = self._redis.register_script(_CAS)

    def _bucket(self, key: str) -> str:
        return f"{self.prefix}b:{key}"

    def _record(self, kind: str, key: str) -> str:
        return f"{self.prefix}r:{kind}:{key}"

    def _index(self, kind: str) -> str:
        return f"{self.prefix}i:{kind}"

    async def ping(self) -> None:
        try:
            await self._redis.ping()
        except (RedisError, OSError) as exc:
            raise StoreError(f"Redis state {self.url}: {exc}") from None

    async def take(self, plans: Sequence[TakePlan], now: float) -> list[TakeResult]:
        if not plans:
            return []
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for plan in plans:
                    keys, args = self._take_args(plan, now)
                    await self._take(keys=keys, args=args, client=pipe)
                replies = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise StoreError(f"Redis state {self.url}: {exc}") from None
        results = []
        for reply in replies:
            wait = float(reply[0]) if reply[0] != "inf" else math.inf
            grants = [(reply[i], int(reply[i + 1])) for i in range(1, len(reply), 2)]
            results.append(TakeResult(grants, 0.0 if grants else wait))
        return results

    def _take_args(self, plan: TakePlan, now: float) -> tuple[list[str], list[str | float | int]]:
        keys = [self._bucket(s.key) for s in plan.shared]
        args: list[str | float | int] = [repr(now), plan.day, plan.wanted, _BUCKET_TTL, len(plan.shared)]
        for s in plan.shared:
            args += [repr(s.rate), repr(s.capacity), repr(s.daily_cap)]
        args.append(len(plan.per_source))
        for source, specs in plan.per_source:
            args += [source, len(specs)]
            for s in specs:
                keys.append(self._bucket(s.key))
                args += [repr(s.rate), repr(s.capacity), repr(s.daily_cap)]
        return keys, args

    async def buckets(self, keys: Sequence[str]) -> dict[str, BucketState]:
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for k in keys:
                    pipe.hgetall(self._bucket(k))
                rows = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise StoreError(f"Redis state {self.url}: {exc}") from None
        return {k: BucketState.from_dict(r) for k, r in zip(keys, rows, strict=True) if r}

    async def get(self, kind: str, keys: Sequence[str]) -> dict[str, Record]:
        if not keys:
            return {}
        try:
            values = await self._redis.mget([self._record(kind, k) for k in keys])
        except (RedisError, OSError) as exc:
            raise StoreError(f"Redis state {self.url}: {exc}") from None
        return {k: json.loads(v) for k, v in zip(keys, values, strict=True) if v is not None}

    async def update_many(self, kind: str, keys: Sequence[str], mutate: KeyedMutation) -> dict[str, Record | None]:
        stored: dict[str, Record | None] = {}
        pending = list(dict.fromkeys(keys))
        try:
            for _attempt in range(_CAS_ATTEMPTS):
                raws = await self._redis.mget([self._record(kind, k) for k in pending])
                writes: list[tuple[str, str | None, Record]] = []
                for key, raw in zip(pending, raws, strict=True):
                    new = mutate(key, json.loads(raw) if raw is not None else None)
                    if new is None:
                        stored[key] = json.loads(raw) if raw is not None else None
                    else:
                        writes.append((key, raw, new))
                if not writes:
                    return stored
                args: list[str] = []
                for key, raw, new in writes:
                    args += [raw or "", _dumps(new), key]
                names = [self._record(kind, key) for key, _raw, _new in writes]
                done = await self._cas(keys=[*names, self._index(kind)], args=args)
                pending = []
                for (key, _raw, new), ok in zip(writes, done, strict=True):
                    if ok:
                        stored[key] = new
                    else:
                        pending.append(key)     # another process wrote it: decide again on its value
                if not pending:
                    return stored
        except (RedisError, OSError) as exc:
            raise StoreError(f"Redis state {self.url}: {exc}") from None
        raise StoreError(f"Redis state {self.url}: {kind} {', '.join(pending)} kept changing; gave up after "
                         f"{_CAS_ATTEMPTS} attempts")

    async def keys(self, kind: str) -> list[str]:
        try:
            return sorted(await self._redis.smembers(self._index(kind)))
        except (RedisError, OSError) as exc:
            raise StoreError(f"Redis state {self.url}: {exc}") from None

    async def add_actions(self, actions: Sequence[Action]) -> None:
        if not actions:
            return
        history = f"{self.prefix}h"
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.rpush(history, *[json.dumps(a.to_dict()) for a in actions])
                pipe.ltrim(history, -self.history_limit, -1)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise StoreError(f"Redis state {self.url}: {exc}") from None

    async def actions(self, key_prefix: str = "", limit: int = 100) -> list[Action]:
        try:
            rows = await self._redis.lrange(f"{self.prefix}h", 0, -1)
        except (RedisError, OSError) as exc:
            raise StoreError(f"Redis state {self.url}: {exc}") from None
        found = [a for a in (Action.from_dict(json.loads(r)) for r in rows) if a.key.startswith(key_prefix)]
        return found[-limit:] if limit > 0 else found

    async def close(self) -> None:
        await self._redis.aclose()
