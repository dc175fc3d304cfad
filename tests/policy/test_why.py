"""The words a refused grant carries to the MTA's `queue list|show`."""

from __future__ import annotations

import time

from policy.engine import why
from policy.engine.state import FOREVER, PairKey, PairState

NOW = time.mktime((2026, 12, 1, 10, 0, 0, 0, 0, -1))


def test_pauses_and_back_offs_name_the_pair_and_the_time() -> None:
    pair = PairKey("ip", "ip1", "google")
    assert why.held_back(pair, PairState(operator_paused=True), NOW) == \
        "paused by an operator: ip1 -> google, until resumed"
    paused = PairState(paused_until=NOW + 3600, pause_rule="block")
    assert why.held_back(pair, paused, NOW) == "paused (rule block): ip1 -> google, until 11:00:00"
    assert why.held_back(PairKey("domain", "news.example", "yahoo"), PairState(backoff_until=NOW + 90), NOW) == \
        "backing off after throttling: domain news.example -> yahoo, next at 10:01:30"
    assert why.held_back(PairKey("isp", "google"), PairState(operator_paused=True), NOW).endswith("isp google, "
                                                                                                    "until resumed")


def test_warm_up_waits_say_which_pairs_and_when() -> None:
    assert why.warmup_wait(["ip1", "ip2"], "yahoo", NOW + 120, False, NOW) == \
        "waiting for warm-up: ip1 -> yahoo, ip2 -> yahoo, next at 10:02:00"
    assert "today's volume is used" in why.warmup_wait(["ip1"], "yahoo", NOW + 86400 * 2, True, NOW)
    assert why.at(FOREVER, NOW) == "until resumed"
