"""When to post again, what a reply means, and what a batch's body is: pure, with an injected clock.

One back-off state per endpoint (not per batch): while an endpoint fails, its head batch is retried
and nothing behind it is tried, so a dead endpoint costs one request per back-off step.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from mta.events import Event

__all__ = ["PAYLOAD_REFUSED", "REFUSALS_TO_DROP", "Backoff", "RetryPolicy", "batch_body", "matches",
           "next_batch_size", "parse_retry_after", "result_label"]


@dataclass(frozen=True)
class RetryPolicy:
    base: float             # delay after the first failure
    cap: float              # longest delay
    max_age: float          # events older than this are dropped instead of retried
    jitter: float = 0.2     # each delay is spread by +-jitter of itself, so endpoints that failed together
                            # (one receiver behind several names, a shared outage) do not retry in step

    def delay(self, failures: int, rand: float, retry_after: float | None = None) -> float:
        """Seconds to wait after the `failures`-th failure in a row; `rand` in [0, 1)."""
        exponent = min(max(failures - 1, 0), 60)
        nominal = min(self.cap, self.base * 2.0 ** exponent)
        spread = nominal * (1.0 - self.jitter + 2.0 * self.jitter * rand)
        if retry_after is not None:             # the receiver asked for a pause (429, 503): honour it, capped
            spread = max(spread, min(retry_after, self.cap))
        return min(spread, self.cap)


class Backoff:
    """Consecutive failures and the time of the next try for one endpoint."""

    def __init__(self, policy: RetryPolicy, clock: Callable[[], float],
                 rand: Callable[[], float] = random.random) -> None:
        self.policy = policy
        self.clock = clock
        self.rand = rand
        self.failures = 0
        self.next_try = 0.0
        self.failing_since = 0.0

    def wait(self) -> float:
        """Seconds until the next try may start (0: now)."""
        return max(0.0, self.next_try - self.clock())

    def failed(self, retry_after: float | None = None) -> float:
        now = self.clock()
        if not self.failures:
            self.failing_since = now
        self.failures += 1
        delay = self.policy.delay(self.failures, self.rand(), retry_after)
        self.next_try = now + delay
        return delay

    def succeeded(self) -> None:
        self.failures = 0
        self.next_try = 0.0
        self.failing_since = 0.0

    def expiry_cutoff(self) -> float:
        """Events created before this are dropped rather than sent."""
        return self.clock() - self.policy.max_age


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds asked for by a Retry-After header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


# Answers that refuse what was sent rather than the sender (a bad signature or URL is 401/403/404):
# the batch is split to find the events refused, and an event refused REFUSALS_TO_DROP times in a
# row is dropped, so one event a receiver cannot take does not hold up every event behind it.
PAYLOAD_REFUSED = frozenset({400, 413, 415, 422})
REFUSALS_TO_DROP = 3


def next_batch_size(current: int, full: int, refused: bool) -> int:
    """How many events the next batch may carry: halved while a receiver refuses batches (down to
    one), doubled back towards the configured size after each success."""
    return max(1, current // 2) if refused else min(full, current * 2)


def result_label(status: int | None, error: str = "") -> str:
    """The `result` label of a post: 2xx, 3xx, 4xx, 5xx, timeout or connect_error."""
    if status is None:
        return error or "connect_error"
    return f"{min(max(status // 100, 1), 5)}xx"


def matches(tenant: str, events: list[str] | frozenset[str], event: Event) -> bool:
    """Whether an endpoint filtered on `tenant` ("" = any) and `events` (empty = all) wants `event`."""
    if tenant and event.tenant != tenant:
        return False
    return not events or event.event in events


def batch_body(events_json: list[str]) -> bytes:
    """`{"events": [...]}`: each item is the event log's JSON object, byte for byte as stored."""
    return ('{"events":[' + ",".join(events_json) + "]}").encode()
