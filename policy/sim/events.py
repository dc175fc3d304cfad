"""Reports that arrive after the fact: complaints (ARF) and bounces by DSN, minutes to hours later.

They are kept in time order and handed back to the simulator when due, so the policy hears of a
complaint when a real feedback loop would tell it, not when the message left.
"""

from __future__ import annotations

import heapq
import itertools
from typing import Protocol

from policy.sim.lanes import Lane

_COMPLAINT = 0
_DSN = 1


class ReportSink(Protocol):
    def complaint_arrived(self, lane: Lane, source: str, rid: int) -> None: ...
    def dsn_arrived(self, lane: Lane, source: str, rid: int) -> None: ...


class LateReports:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, int, Lane, str, int]] = []
        self._seq = itertools.count()

    def complaint(self, at: float, lane: Lane, source: str, rid: int) -> None:
        heapq.heappush(self._heap, (at, next(self._seq), _COMPLAINT, lane, source, rid))

    def dsn(self, at: float, lane: Lane, source: str, rid: int) -> None:
        heapq.heappush(self._heap, (at, next(self._seq), _DSN, lane, source, rid))

    def deliver_due(self, now: float, sink: ReportSink) -> None:
        heap = self._heap
        while heap and heap[0][0] <= now:
            _at, _seq, kind, lane, source, rid = heapq.heappop(heap)
            if kind == _COMPLAINT:
                sink.complaint_arrived(lane, source, rid)
            else:
                sink.dsn_arrived(lane, source, rid)

    def __len__(self) -> int:
        return len(self._heap)
