"""A store in process memory: for unit tests and the simulator, where speed and no I/O matter.

Records are kept as JSON text, like the other backends keep them, so what works here is known
to survive a trip through SQLite or Redis (and a copy costs one json.loads).
"""

from __future__ import annotations

import copy
import json
from collections import deque
from collections.abc import Sequence

from policy.engine.bucket import BucketState, TakePlan, TakeResult, take
from policy.engine.model import Action
from policy.store.base import KeyedMutation, Record, Store


class MemoryStore(Store):
    def __init__(self, history_limit: int = 10000) -> None:
        self._buckets: dict[str, BucketState] = {}
        self._records: dict[str, dict[str, str]] = {}
        self._history: deque[Action] = deque(maxlen=history_limit)

    async def take(self, plans: Sequence[TakePlan], now: float) -> list[TakeResult]:
        results = []
        for plan in plans:
            result, states = take(plan, {s.key: self._buckets.get(s.key) for s in plan.specs()}, now)
            self._buckets.update(states)
            results.append(result)
        return results

    async def buckets(self, keys: Sequence[str]) -> dict[str, BucketState]:
        return {k: copy.copy(self._buckets[k]) for k in keys if k in self._buckets}

    async def get(self, kind: str, keys: Sequence[str]) -> dict[str, Record]:
        table = self._records.get(kind, {})
        return {k: json.loads(table[k]) for k in keys if k in table}

    async def update_many(self, kind: str, keys: Sequence[str], mutate: KeyedMutation) -> dict[str, Record | None]:
        table = self._records.setdefault(kind, {})
        stored: dict[str, Record | None] = {}
        for key in dict.fromkeys(keys):
            raw = table.get(key)
            new = mutate(key, json.loads(raw) if raw is not None else None)
            if new is not None:
                table[key] = json.dumps(new)
                stored[key] = new
            else:
                stored[key] = json.loads(raw) if raw is not None else None
        return stored

    async def keys(self, kind: str) -> list[str]:
        return sorted(self._records.get(kind, {}))

    async def add_actions(self, actions: Sequence[Action]) -> None:
        self._history.extend(actions)

    async def actions(self, key_prefix: str = "", limit: int = 100) -> list[Action]:
        found = [a for a in self._history if a.key.startswith(key_prefix)]
        return found[-limit:] if limit > 0 else found
