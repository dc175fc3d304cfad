"""Deliverability over time for the console: delivered, deferred, bounced and complained per hour,
per destination site and per egress source, and delivered per day per source (the warm-up charts).

Pure bookkeeping fed by the event log (subscriber) and, at start, by the tail of events.jsonl, so
a restart does not blank the console. Bounded: hours older than `keep_hours` and days older than
`keep_days` are dropped.
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from mta.events import Event

__all__ = ["DeliverabilityStats"]

COUNTED = {"delivered": "delivered", "deferred": "deferred", "bounced": "bounced", "expired": "bounced",
           "complaint": "complained"}
HOUR = 3600.0
DAY = 86400.0


class DeliverabilityStats:
    def __init__(self, keep_hours: int = 168, keep_days: int = 90) -> None:
        self.keep_hours = keep_hours
        self.keep_days = keep_days
        # (group, name) -> hour start -> counter -> n; group is "isp" (the site) or "ip" (the source)
        self._hours: dict[tuple[str, str], dict[int, dict[str, int]]] = defaultdict(dict)
        self._days: dict[str, dict[int, int]] = defaultdict(dict)        # source -> day start -> delivered
        self._newest = 0.0

    def on_event(self, event: Event) -> None:
        self.add(event.event, event.time, event.site, event.source)

    def add(self, name: str, at: float, site: str, source: str) -> None:
        counter = COUNTED.get(name)
        if counter is None:
            return
        hour = int(at // HOUR * HOUR)
        for group, key in (("isp", site), ("ip", source)):
            if key:
                bucket = self._hours[(group, key)].setdefault(hour, {})
                bucket[counter] = bucket.get(counter, 0) + 1
        if counter == "delivered" and source:
            day = int(at // DAY * DAY)
            self._days[source][day] = self._days[source].get(day, 0) + 1
        if at > self._newest + HOUR:
            self._newest = at
            self._prune(at)

    def _prune(self, now: float) -> None:
        oldest_hour = now - self.keep_hours * HOUR
        for key in list(self._hours):
            hours = self._hours[key]
            for h in [h for h in hours if h < oldest_hour]:
                del hours[h]
            if not hours:
                del self._hours[key]
        oldest_day = now - self.keep_days * DAY
        for source in list(self._days):
            days = self._days[source]
            for d in [d for d in days if d < oldest_day]:
                del days[d]

    def series(self, by: str, hours: int, now: float) -> dict[str, list[dict[str, Any]]]:
        """Per name, one entry per hour of the last `hours` (zeros included, oldest first)."""
        end = int(now // HOUR * HOUR)
        starts = [end - i * int(HOUR) for i in range(max(1, min(hours, self.keep_hours)) - 1, -1, -1)]
        out: dict[str, list[dict[str, Any]]] = {}
        for (group, name), buckets in sorted(self._hours.items()):
            if group != by or not any(h >= starts[0] for h in buckets):
                continue
            out[name] = [{"hour": h, **buckets.get(h, {})} for h in starts]
        return out

    def daily(self) -> dict[str, list[dict[str, Any]]]:
        """Per source, delivered per UTC day, oldest first."""
        return {source: [{"date": time.strftime("%Y-%m-%d", time.gmtime(d)), "start": d, "delivered": n}
                         for d, n in sorted(days.items())]
                for source, days in sorted(self._days.items()) if days}

    def replay(self, lines: Iterable[str]) -> int:
        """Counts past events (JSON Lines as in events.jsonl); returns how many were read."""
        n = 0
        for line in lines:
            try:
                e = json.loads(line)
                at = _epoch(e["time"])
                self.add(e["event"], at, e.get("site", ""), e.get("source", ""))
                n += 1
            except (ValueError, KeyError, TypeError):
                continue            # a torn last line, a line from another version
        return n

    def replay_file(self, path: str, tail_bytes: int = 64 * 1024 * 1024, end: int | None = None) -> int:
        """The last `tail_bytes` of the event log before byte `end` (default: its end now): recent
        history; older lines are outside the window."""
        try:
            with open(path, "rb") as f:
                size = f.seek(0, os.SEEK_END) if end is None else end
                f.seek(max(0, size - tail_bytes))
                if size > tail_bytes:
                    f.readline()            # a partial first line
                data = f.read(max(0, size - f.tell()))
        except OSError:
            return 0
        return self.replay(data.decode("utf-8", "replace").splitlines())


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
