"""The one store interface: bucket takes, JSON records with atomic updates, and the action history.

Three backends implement it: memory (tests, simulator), SQLite (the embedded default) and Redis
(shared by several policyd processes). The same test suite runs against each.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from typing import Any

from policy.engine.bucket import BucketState, TakePlan, TakeResult
from policy.engine.model import Action

Record = dict[str, Any]
Mutation = Callable[[Record | None], Record | None]   # returns the new record, or None for no change
KeyedMutation = Callable[[str, Record | None], Record | None]   # the same, told which key it changes

PAIR = "pair"       # record kinds
HEALTH = "health"
KINDS = (PAIR, HEALTH)


class StoreError(RuntimeError):
    """The state backend failed; the message says which and why."""


class Store(abc.ABC):
    shared = False      # True when several policyd processes share this state (a cluster)

    @abc.abstractmethod
    async def take(self, plans: Sequence[TakePlan], now: float) -> list[TakeResult]:
        """Runs each plan as one atomic take (see engine.bucket.take), in order."""

    @abc.abstractmethod
    async def buckets(self, keys: Sequence[str]) -> dict[str, BucketState]:
        """The stored states of these buckets (missing ones are left out), for status displays."""

    @abc.abstractmethod
    async def get(self, kind: str, keys: Sequence[str]) -> dict[str, Record]:
        """Records of one kind by key; missing ones are left out."""

    @abc.abstractmethod
    async def update_many(self, kind: str, keys: Sequence[str], mutate: KeyedMutation) -> dict[str, Record | None]:
        """Atomic read-modify-write of each record (one by one, not all together), in few round trips.

        Returns what is stored afterwards, by key. `mutate` may run more than once for a key when
        another process wrote that record meanwhile, so it must be a pure function of its arguments.
        """

    async def update(self, kind: str, key: str, mutate: Mutation) -> Record | None:
        """`update_many` for one record."""
        return (await self.update_many(kind, [key], lambda _key, old: mutate(old)))[key]

    @abc.abstractmethod
    async def keys(self, kind: str) -> list[str]:
        """Every key of one kind."""

    @abc.abstractmethod
    async def add_actions(self, actions: Sequence[Action]) -> None:
        """Appends to the history (the oldest entries beyond the backend's limit are dropped)."""

    @abc.abstractmethod
    async def actions(self, key_prefix: str = "", limit: int = 100) -> list[Action]:
        """The newest `limit` actions whose pair key starts with `key_prefix`, oldest first."""

    async def close(self) -> None:  # noqa: B027 - optional for backends with nothing to close
        """Releases connections and files."""
