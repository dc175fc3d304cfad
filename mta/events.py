"""One event type for every recipient outcome; the JSON Lines log and the metrics derive from it.

Event names: accepted, scheduled (a send_at in the future), delivered, deferred, bounced, expired,
dropped, cancelled (through the API, before it left), delayed (a "delayed" DSN was sent),
recovered (found in flight after a crash: it may be delivered twice), opened and clicked
(tracking; `machine` marks privacy-proxy and link-scanner activity).
"""

from __future__ import annotations

import json
import logging
import math
import operator
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

log = logging.getLogger("mta.events")


@dataclass(slots=True)
class Event:
    event: str
    queue_id: str
    recipient: str
    sender: str = ""
    time: float = 0.0
    queued_at: float = 0.0
    site: str = ""
    mx: str = ""
    source: str = ""            # egress source name
    source_ip: str = ""
    code: int = 0
    status: str = ""            # enhanced status code
    text: str = ""
    reason: str = ""            # bounce_parser taxonomy
    attempt: int = 0
    stream: str = ""
    tenant: str = ""
    sending_domain: str = ""
    message_id: str = ""        # the message's Message-ID header
    dsn_queue_id: str = ""      # queue id of the DSN this outcome produced
    campaign: str = ""          # the message's campaign (tag), "" if none
    variant: str = ""           # A/B variant of the message, "" if none
    url: str = ""               # clicked: the original link
    machine: bool = False       # opened/clicked by a machine (privacy proxy, link scanner): reason says which

    def to_json(self) -> str:
        d = dict(zip(_FIELDS, _values(self), strict=True))  # scalars only: no deep copy needed
        d["time"] = _iso(self.time)
        d["queued_at"] = _iso(self.queued_at) if self.queued_at else ""
        return _ENCODE(d)


_FIELDS: tuple[str, ...] = Event.__slots__  # type: ignore[attr-defined]
_values = operator.attrgetter(*_FIELDS)
_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_seconds: dict[int, str] = {}     # recent seconds formatted: event time, queue time, API times


def _iso(t: float) -> str:
    """RFC 3339, UTC, milliseconds: what datetime's isoformat(timespec="milliseconds") writes for
    `t` (rounded to the microsecond, then cut to the millisecond), with the date and time of day
    formatted once per second (two events are written per message, each with two times)."""
    fraction, whole = math.modf(t)
    micro = round(fraction * 1e6)        # half to even, as datetime.fromtimestamp rounds
    second = int(whole)
    if micro >= 1_000_000:
        second, micro = second + 1, micro - 1_000_000
    elif micro < 0:
        second, micro = second - 1, micro + 1_000_000
    text = _seconds.get(second)
    if text is None:
        if len(_seconds) >= 256:
            _seconds.clear()
        text = _seconds[second] = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{micro // 1000:03d}Z"


iso_time = _iso     # RFC 3339 in UTC with milliseconds, as the event log writes times


class EventLog:
    """Appends events to a JSON Lines file, buffered; flush() is called by the daemon's timer.

    Subscribers (metrics, policy feedback) see every event synchronously, before it is written.
    The file is reopened by reopen() (SIGHUP), so logrotate can move it away.
    """

    def __init__(self, path: str, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.clock = clock
        self._buffer: list[str] = []
        self._subscribers: list[Callable[[Event], None]] = []
        self._failing = False
        self._held = False          # hold(): the file is being rewritten; events wait in the buffer
        self._file = self._open()

    def _open(self):  # type: ignore[no-untyped-def]
        if not self.path:
            return None
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        return open(self.path, "a", encoding="utf-8", buffering=1 << 16)

    def subscribe(self, fn: Callable[[Event], None]) -> None:
        self._subscribers.append(fn)

    def emit(self, event: Event) -> None:
        if not event.time:
            event.time = self.clock()
        for fn in self._subscribers:
            try:
                fn(event)
            except Exception:
                log.exception("event subscriber failed")
        if self._file is not None or self._held:
            self._buffer.append(event.to_json())
            if len(self._buffer) >= 2000:
                self.flush()

    def flush(self) -> None:
        if not self._buffer or self._file is None:
            return
        try:
            self._file.write("\n".join(self._buffer) + "\n")
            self._file.flush()
            if self._failing:
                self._failing = False
                log.warning("event log %s is written again", self.path)
        except OSError as exc:
            # Once per episode (a full disk fails every flush); these lines are lost, the spool is not.
            if not self._failing:
                self._failing = True
                log.error("cannot write event log %s: %s (events are dropped until it can be written)",
                          self.path, exc)
        self._buffer.clear()

    def hold(self) -> None:
        """Flushes and closes the file so another writer may replace it (erasure rewrites it);
        events emitted meanwhile wait in the buffer until release()."""
        self.flush()
        self._close_file()
        self._file = None
        self._held = bool(self.path)

    def release(self) -> None:
        self._held = False
        self._file = self._open()
        self.flush()

    def drop_buffered(self, unwanted: Callable[[str], bool]) -> int:
        """Removes buffered lines (not yet written) for which `unwanted` is true; returns how many."""
        kept = [line for line in self._buffer if not unwanted(line)]
        dropped, self._buffer = len(self._buffer) - len(kept), kept
        return dropped

    def reopen(self) -> None:
        self.flush()
        self._close_file()
        self._file = self._open()

    def close(self) -> None:
        self.flush()
        self._close_file()
        self._file = None

    def _close_file(self) -> None:
        # On a full disk the close itself fails flushing what the failed writes left buffered; the
        # file is closed all the same, and a reopen (log rotation) must still happen.
        if self._file is not None:
            try:
                self._file.close()
            except OSError as exc:
                log.warning("closing event log %s: %s (its last lines are lost)", self.path, exc)
