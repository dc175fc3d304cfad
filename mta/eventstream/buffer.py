"""A bounded FIFO of encoded events and the bookkeeping of a sink's outages: pure, no I/O.

While the sink is down events wait here up to a bound; past it, new ones are dropped and counted,
so memory stays bounded and acceptance and delivery never wait for the sink.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


class StreamBuffer:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: deque[tuple[str, ...]] = deque()
        self.dropped = 0            # since start

    def __len__(self) -> int:
        return len(self._items)

    def add(self, item: tuple[str, ...]) -> bool:
        """False (and counted) when full."""
        if len(self._items) >= self.capacity:
            self.dropped += 1
            return False
        self._items.append(item)
        return True

    def peek(self, n: int) -> list[tuple[str, ...]]:
        """The `n` oldest, left in place until `consume` says they are written."""
        return [self._items[i] for i in range(min(n, len(self._items)))]

    def consume(self, n: int) -> None:
        for _ in range(min(n, len(self._items))):
            self._items.popleft()


@dataclass
class OutageReport:
    seconds: float
    dropped: int


class Outage:
    """Whether the sink is down, since when, and what was dropped meanwhile; says when to log, so an
    outage makes one line when it starts, one at the first drop and one when it ends."""

    def __init__(self) -> None:
        self.since: float | None = None
        self.dropped = 0
        self._drop_noted = False

    @property
    def down(self) -> bool:
        return self.since is not None

    def failed(self, now: float) -> bool:
        """True if this failure starts an outage."""
        if self.since is not None:
            return False
        self.since, self.dropped, self._drop_noted = now, 0, False
        return True

    def dropped_one(self) -> bool:
        """True for the first drop of this outage (or of a time the buffer was full while up)."""
        self.dropped += 1
        if self._drop_noted:
            return False
        self._drop_noted = True
        return True

    def drained(self) -> None:
        """The buffer is empty again: a later drop is a new episode, worth a new line."""
        if self.since is None:
            self._drop_noted = False

    def recovered(self, now: float) -> OutageReport | None:
        """The outage that just ended, or None if there was none."""
        if self.since is None:
            return None
        report = OutageReport(now - self.since, self.dropped)
        self.since, self.dropped, self._drop_noted = None, 0, False
        return report
