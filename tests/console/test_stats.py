"""Deliverability bookkeeping for the console: hourly series, daily volume, replay, bounds."""

from __future__ import annotations

from mta.events import Event
from mta.http.console.stats import DAY, HOUR, DeliverabilityStats

T0 = 1_800_000_000.0 // DAY * DAY          # midnight UTC


def ev(name: str, at: float, site: str = "gmail", source: str = "ip1") -> Event:
    return Event(name, "Q", "a@x.test", time=at, site=site, source=source)


def test_hourly_series_per_site_and_per_source() -> None:
    stats = DeliverabilityStats()
    for i in range(5):
        stats.on_event(ev("delivered", T0 + 10 + i))
    stats.on_event(ev("deferred", T0 + HOUR + 5))
    stats.on_event(ev("bounced", T0 + HOUR + 6, site="yahoo", source="ip2"))
    stats.on_event(ev("complaint", T0 + HOUR + 7))
    stats.on_event(ev("accepted", T0 + HOUR + 8))              # not an outcome
    by_site = stats.series("isp", 3, T0 + HOUR + 100)
    assert set(by_site) == {"gmail", "yahoo"}
    assert [h["hour"] for h in by_site["gmail"]] == [T0 - HOUR, T0, T0 + HOUR]
    assert by_site["gmail"][1] == {"hour": T0, "delivered": 5}
    assert by_site["gmail"][2] == {"hour": T0 + HOUR, "deferred": 1, "complained": 1}
    by_ip = stats.series("ip", 3, T0 + HOUR + 100)
    assert by_ip["ip2"][2]["bounced"] == 1 and sum(h.get("delivered", 0) for h in by_ip["ip1"]) == 5


def test_daily_delivered_per_source_for_the_charts() -> None:
    stats = DeliverabilityStats()
    for day, n in ((0, 3), (1, 7)):
        for i in range(n):
            stats.on_event(ev("delivered", T0 + day * DAY + i))
    daily = stats.daily()["ip1"]
    assert [(d["delivered"], d["start"]) for d in daily] == [(3, T0), (7, T0 + DAY)]


def test_old_hours_and_days_are_dropped() -> None:
    stats = DeliverabilityStats(keep_hours=2, keep_days=1)
    stats.on_event(ev("delivered", T0))
    stats.on_event(ev("delivered", T0 + 3 * DAY))
    assert stats.series("isp", 100, T0 + 3 * DAY)["gmail"][-1]["delivered"] == 1
    assert len(stats.series("isp", 100, T0 + 3 * DAY)["gmail"]) == 2
    assert [d["start"] for d in stats.daily()["ip1"]] == [T0 + 3 * DAY]


def test_replay_of_the_event_log_tail(tmp_path) -> None:
    path = tmp_path / "events.jsonl"
    lines = [ev("delivered", T0 + i).to_json() for i in range(4)] + ['{"torn":', "not json"]
    path.write_text("\n".join(lines) + "\n")
    stats = DeliverabilityStats()
    assert stats.replay_file(str(path)) == 4
    assert stats.series("isp", 1, T0 + 60)["gmail"][0]["delivered"] == 4
    tail = DeliverabilityStats()
    assert tail.replay_file(str(path), tail_bytes=len(lines[-1]) + len(lines[-2]) + 150) <= 1


def test_replay_stops_where_the_subscription_took_over(tmp_path) -> None:
    path = tmp_path / "events.jsonl"
    first = "\n".join(ev("delivered", T0 + i).to_json() for i in range(3)) + "\n"
    path.write_text(first + ev("delivered", T0 + 10).to_json() + "\n")      # written after the cut
    stats = DeliverabilityStats()
    assert stats.replay_file(str(path), end=len(first.encode())) == 3
    assert stats.series("isp", 1, T0 + 60)["gmail"][0]["delivered"] == 3
