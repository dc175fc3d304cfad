"""The console's pure parts: sessions with an injected clock, CSRF tokens, the schedule line of the
warm-up charts and the decision filters."""

from __future__ import annotations

from mta.http.console.csrf import new_token, token_matches
from mta.http.console.data import matches, with_schedule
from mta.http.console.session import MAX_SESSIONS, Sessions


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_sessions_expire_and_close() -> None:
    clock = Clock()
    sessions = Sessions(3600, clock)
    s = sessions.open("hash", "ann")
    assert sessions.get(s.id) == s and s.expires == clock.now + 3600
    clock.now += 3599
    assert sessions.get(s.id) is not None
    clock.now += 1
    assert sessions.get(s.id) is None and len(sessions) == 0
    t = sessions.open("hash", "ann")
    sessions.close(t.id)
    assert sessions.get(t.id) is None
    assert sessions.get("") is None


def test_sessions_are_bounded_oldest_out_and_tokens_differ() -> None:
    sessions = Sessions(3600, Clock())
    opened = [sessions.open("h", "ann") for _ in range(MAX_SESSIONS + 5)]
    assert len(sessions) == MAX_SESSIONS
    assert sessions.get(opened[0].id) is None and sessions.get(opened[-1].id) is not None
    assert len({s.id for s in opened}) == len(opened) and len({s.csrf for s in opened}) == len(opened)


def test_csrf_tokens_match_only_themselves() -> None:
    token = new_token()
    assert token_matches(token, token)
    for wrong in ("", token[:-1], new_token()):
        assert not token_matches(token, wrong)


def test_schedule_line_follows_each_pairs_day_back_in_time() -> None:
    day = 86400
    now = 100 * day + 3600
    daily = {"ip1": [{"date": "d-2", "start": 98 * day, "delivered": 5}, {"date": "d0", "start": 100 * day,
                                                                          "delivered": 9}],
             "ip9": [{"date": "d0", "start": 100 * day, "delivered": 1}]}
    pairs = [{"kind": "ip", "name": "ip1", "isp": "google", "schedule": "s", "day": 3},
             {"kind": "ip", "name": "ip1", "isp": "yahoo", "schedule": "t", "day": 1},
             {"kind": "ip", "name": "ip1", "isp": "*", "schedule": "s", "day": 0},        # all-ISPs pause row
             {"kind": "domain", "name": "ip1", "isp": "google", "schedule": "s", "day": 3}]
    schedules = {"s": [10, 20, 30, 40], "t": [1, 2]}
    out = with_schedule(daily, pairs, schedules, now)
    assert [d["schedule"] for d in out["ip1"]] == [20 + 1, 40 + 2]    # two days back: day 1 and day 0 (floor)
    assert out["ip9"][0]["schedule"] is None                           # no pairs: no plan to draw


def test_decision_filters() -> None:
    a = {"key": "ip|ip1|google", "rule": "hard_bounce_warning"}
    d = {"key": "domain|news.example|yahoo", "rule": "complaint_hold"}
    assert matches(a, "ip1", "", "", "") and not matches(d, "ip1", "", "", "")
    assert matches(a, "", "google", "", "") and not matches(a, "", "yahoo", "", "")
    assert matches(d, "", "", "News.Example", "") and not matches(a, "", "", "news.example", "")
    assert matches(a, "", "", "", "hard_bounce") and not matches(a, "", "", "", "complaint")
