"""Back-off, expiry and batch decisions of the webhook sender (pure, injected clock and randomness)."""

from __future__ import annotations

import json
from email.utils import formatdate

from mta.events import Event
from mta.webhooks.retry import (
    Backoff,
    RetryPolicy,
    batch_body,
    matches,
    next_batch_size,
    parse_retry_after,
    result_label,
)
from tests.mta.conftest import FakeClock

POLICY = RetryPolicy(base=5.0, cap=1800.0, max_age=86400.0, jitter=0.2)


class ManualClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_delay_doubles_from_base_up_to_the_cap() -> None:
    middle = [POLICY.delay(n, rand=0.5) for n in range(1, 12)]
    assert middle[:5] == [5.0, 10.0, 20.0, 40.0, 80.0]
    assert middle[-1] == 1800.0 and max(middle) == 1800.0
    assert POLICY.delay(10_000, rand=0.5) == 1800.0          # no overflow after days of failures


def test_jitter_spreads_each_delay_within_its_share_and_never_past_the_cap() -> None:
    assert POLICY.delay(1, rand=0.0) == 4.0 and POLICY.delay(1, rand=0.999999) < 6.0
    assert POLICY.delay(20, rand=0.999999) == 1800.0


def test_retry_after_is_honoured_but_capped() -> None:
    assert POLICY.delay(1, rand=0.5, retry_after=120.0) == 120.0
    assert POLICY.delay(1, rand=0.5, retry_after=1.0) == 5.0          # never sooner than the back-off
    assert POLICY.delay(1, rand=0.5, retry_after=86400.0) == 1800.0


def test_parse_retry_after_reads_seconds_and_http_dates() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("30", now) == 30.0
    assert parse_retry_after("Tue, 14 Nov 2023 22:13:20 GMT", now) == 0.0      # 1,700,000,000 itself
    assert parse_retry_after(formatdate(now + 100, usegmt=True), now) == 100.0
    assert parse_retry_after("soon", now) is None and parse_retry_after(None, now) is None


def test_backoff_waits_grow_and_reset_on_success() -> None:
    clock = ManualClock()
    b = Backoff(POLICY, clock, rand=lambda: 0.5)
    assert b.wait() == 0.0
    assert b.failed() == 5.0 and b.wait() == 5.0
    clock.now += 5.0
    assert b.wait() == 0.0
    assert b.failed() == 10.0 and b.failures == 2
    b.succeeded()
    assert b.wait() == 0.0 and b.failures == 0
    assert b.expiry_cutoff() == clock.now - 86400.0


def test_backoff_follows_a_clock_that_jumps() -> None:
    clock = FakeClock()
    b = Backoff(POLICY, clock, rand=lambda: 0.5)
    b.failed()
    clock.advance(3600)
    assert b.wait() == 0.0


def test_filters_on_tenant_and_event_name() -> None:
    ev = Event("delivered", "Q1", "a@example.test", tenant="acme")
    assert matches("", [], ev)
    assert matches("acme", [], ev) and not matches("other", [], ev)
    assert matches("", ["delivered", "bounced"], ev) and not matches("", ["bounced"], ev)
    assert not matches("acme", ["bounced"], ev)


def test_batch_body_holds_the_events_as_logged() -> None:
    lines = [Event("accepted", "Q1", "a@example.test", time=1.5).to_json(),
             Event("delivered", "Q1", "a@example.test", time=2.0).to_json()]
    body = batch_body(lines)
    assert json.loads(body) == {"events": [json.loads(line) for line in lines]}


def test_result_labels() -> None:
    assert [result_label(s) for s in (200, 204, 301, 404, 410, 500, 503)] == [
        "2xx", "2xx", "3xx", "4xx", "4xx", "5xx", "5xx"]
    assert result_label(None, "timeout") == "timeout" and result_label(None) == "connect_error"


def test_batches_halve_while_refused_and_grow_back() -> None:
    assert [next_batch_size(n, 100, refused=True) for n in (100, 50, 3, 1)] == [50, 25, 1, 1]
    assert [next_batch_size(n, 100, refused=False) for n in (1, 25, 60, 100)] == [2, 50, 100, 100]
