"""MTA-side lanes: retries first, revoked leases go back unattempted, retries wait and expire."""

from __future__ import annotations

import random

from policy.sim.lanes import Lane, RetrySchedule
from warmup_base.policy_protocol.model import GrantRequest
from warmup_base.retry import RetryPolicy

ASK = GrantRequest("gmail.com", ("gmail-smtp-in.l.google.com",), "news", ("ip1",), "marketing", "news.test", "", 0)


def lane() -> Lane:
    return Lane(0, "news", "newsletter", "google", ASK)


def test_retries_go_before_fresh_mail() -> None:
    ln = lane()
    ln.queue([1, 2, 3], now=100.0)
    ln.retries.append((9, 2, 50.0))
    rids, meta = ln.take(3)
    assert rids == [9, 1, 2] and meta == [(2, 50.0), (0, 100.0), (0, 100.0)]
    assert ln.pending == 1


def test_a_revoked_lease_goes_back_in_order() -> None:
    ln = lane()
    ln.queue([1, 2, 3, 4], now=0.0)
    ln.retries.append((9, 1, 0.0))
    rids, meta = ln.take(4)
    ln.give_back(rids[1:], meta[1:])
    assert ln.take(10)[0] == [1, 2, 3, 4]


def test_an_imported_list_goes_first_and_withdrawal_empties_the_fresh_queue() -> None:
    ln = lane()
    ln.queue([1, 2], now=0.0)
    ln.queue([7, 8], now=5.0, first=True)
    ln.retries.append((9, 1, 0.0))
    assert ln.withdraw() == [7, 8, 1, 2]
    assert ln.pending == 1


def test_deferred_mail_waits_for_its_retry_and_expires_at_its_age() -> None:
    schedule = RetrySchedule(RetryPolicy(base=60, factor=2, cap=3600, jitter=0.0, max_age=1000), random.Random(1))
    ln = lane()
    assert schedule.defer(ln, 5, 1, created=0.0, now=10.0)
    assert schedule.defer(ln, 6, 3, created=0.0, now=10.0)
    assert schedule.due(69.0) == []
    assert schedule.due(70.0) == [(0, 5, 1, 0.0)]
    assert schedule.due(250.0) == [(0, 6, 3, 0.0)]
    assert not schedule.defer(ln, 7, 1, created=0.0, now=1000.0)
    assert len(schedule) == 0
