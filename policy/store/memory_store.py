"""A store in process memory: for unit tests and the simulator, where speed and no I/O matter."""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Sequence

from policy.engine.bucket import BucketState, TakePlan, TakeResult, take
from policy.engine.model import Action
from policy.store.base import Mutation, Record, Store


class MemoryStore(Store):
    def __init__(self, history_limit: int = 10000) -> None:
        self._buckets: dict[str, BucketState] = {}
        self._records: dict[str, dict[str, Record]] = {}
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
        return {k: copy.deepcopy(table[k]) for k in keys if k in table}

    async def update(self, kind: str, key: str, mutate: Mutation) -> Record | None:
        table = self._records.setdefault(kind, {})
        old = table.get(key)
        new = mutate(copy.deepcopy(old))
        if new is not None:
            table[key] = copy.deepcopy(new)
            return new
        return old

    async def keys(self, kind: str) -> list[str]:
        return sorted(self._records.get(kind, {}))

    async def add_actions(self, actions: Sequence[Action]) -> None:
        self._history.extend(actions)

    async def actions(self, key_prefix: str = "", limit: int = 100) -> list[Action]:
        found = [a for a in self._history if a.key.startswith(key_prefix)]
        return found[-limit:] if limit > 0 else found
