"""The engagement store in Redis, for nodes that share it (`[engagement] redis`).

One hash per recipient (`<prefix><address>`) with the same fields as the SQLite row. Scores are
anchored (see mta.engagement.score), so an update adds: HINCRBYFLOAT. The last-open/click/delivery
times take the larger value and the first delivery the smaller one; a small Lua script does the
whole update of one recipient atomically (one key, so it works on a cluster too), whatever order
nodes' updates arrive in. A batch is aggregated per recipient first and sent in one pipeline.

The interface is EngagementStore's (record, get, get_many, erase, close), synchronous: the
recorder calls it from a worker thread.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import redis

from mta.engagement.score import (
    CLICKED,
    OPENED,
    EngagementRecord,
    EngagementRules,
    activity_weight,
    anchored,
    from_anchored,
)
from mta.engagement.store import Activity

__all__ = ["RedisEngagementStore"]

FIELDS = ("anchored_score", "last_open", "last_click", "first_delivered", "last_delivered", "opens", "clicks")

_UPDATE = """
local key = KEYS[1]
redis.call('HINCRBYFLOAT', key, 'anchored_score', ARGV[1])
local function raise_to(field, value)
  if tonumber(value) > tonumber(redis.call('HGET', key, field) or '0') then
    redis.call('HSET', key, field, value)
  end
end
raise_to('last_open', ARGV[2])
raise_to('last_click', ARGV[3])
raise_to('last_delivered', ARGV[5])
local first = tonumber(ARGV[4])
if first > 0 then
  local current = tonumber(redis.call('HGET', key, 'first_delivered') or '0')
  if current == 0 or first < current then redis.call('HSET', key, 'first_delivered', ARGV[4]) end
end
redis.call('HINCRBY', key, 'opens', ARGV[6])
redis.call('HINCRBY', key, 'clicks', ARGV[7])
return 1
"""


def _key(address: str) -> str:
    return address.strip().strip("<>").lower()


class RedisEngagementStore:
    def __init__(self, url: str, rules: EngagementRules | None = None, prefix: str = "mta:engagement:",
                 timeout: float = 5.0) -> None:
        self.rules = rules or EngagementRules()
        self.prefix = prefix
        self._redis = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        self._update = self._redis.register_script(_UPDATE)

    def record(self, activities: Iterable[Activity]) -> int:
        totals: dict[str, list[float]] = {}
        n = 0
        for a in activities:
            opened, clicked, delivered = a.kind == OPENED, a.kind == CLICKED, a.kind == "delivered"
            if not (opened or clicked or delivered):
                continue
            n += 1
            t = totals.setdefault(_key(a.recipient), [0.0, 0.0, 0.0, 0.0, 0.0, 0, 0])
            if not delivered:
                t[0] += anchored(activity_weight(a.kind, self.rules), a.at, self.rules)
            if opened:
                t[1], t[5] = max(t[1], a.at), t[5] + 1
            if clicked:
                t[2], t[6] = max(t[2], a.at), t[6] + 1
            if delivered:
                t[3] = a.at if t[3] == 0 else min(t[3], a.at)
                t[4] = max(t[4], a.at)
        if totals:
            pipe = self._redis.pipeline(transaction=False)
            for recipient, t in totals.items():
                self._update(keys=[self.prefix + recipient],
                             args=[repr(float(t[0])), *(repr(float(x)) for x in t[1:5]), int(t[5]), int(t[6])],
                             client=pipe)
            pipe.execute()
        return n

    def get(self, address: str, now: float) -> EngagementRecord | None:
        return self.get_many([address], now).get(_key(address))

    def get_many(self, addresses: Sequence[str], now: float) -> dict[str, EngagementRecord]:
        keys = list({_key(a) for a in addresses})
        found: dict[str, EngagementRecord] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            pipe = self._redis.pipeline(transaction=False)
            for k in chunk:
                pipe.hmget(self.prefix + k, FIELDS)
            for recipient, values in zip(chunk, pipe.execute(), strict=True):
                if values[0] is None and all(v is None for v in values):
                    continue
                score, lo, lc, fd, ld, opens, clicks = (float(v or 0) for v in values)
                found[recipient] = EngagementRecord(recipient, from_anchored(score, now, self.rules), now, lo, lc,
                                                    fd, ld, int(opens), int(clicks))
        return found

    def erase(self, address: str) -> int:
        return int(self._redis.delete(self.prefix + _key(address)))

    def close(self) -> None:
        self._redis.close()
