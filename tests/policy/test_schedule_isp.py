"""Schedules, the warm-up calendar and ISP recognition (with the shipped ISP defaults)."""

from __future__ import annotations

import itertools

import pytest

from policy.config import load_config
from policy.engine.isp import IspCatalog
from policy.engine.schedule import Calendar, Schedule
from policy.engine.settings import ScheduleSettings, WarmupSettings
from tests.policy.conftest import DAY, REPO, T0


def test_a_schedule_holds_its_last_volume_after_the_last_day() -> None:
    s = Schedule.from_settings("s", ScheduleSettings([10, 20, 40]))
    assert [s.volume(d) for d in range(5)] == [10, 20, 40, 40, 40]
    assert s.last_day == 2


def test_the_shipped_default_schedule_reaches_100000_a_day_and_outreach_stays_in_tens() -> None:
    cfg = load_config(str(REPO / "conf" / "policy.toml"))
    default = cfg.policy.schedules["default"].days
    assert default[-1] >= 100000 and default[0] <= 100
    assert all(later >= earlier for earlier, later in itertools.pairwise(default))
    outreach = cfg.policy.schedules["outreach"].days
    assert outreach[0] <= 10 and 40 <= max(outreach) <= 50


def test_day_numbers_follow_day_length_and_day_start() -> None:
    cal = Calendar(WarmupSettings(day_start=6 * 3600.0))
    assert cal.day_index(T0 + 5 * 3600) == cal.day_index(T0 + 7 * 3600) - 1
    short = Calendar(WarmupSettings(day_length=60.0))       # one-minute days for demos
    assert short.day_index(T0 + 59) == short.day_index(T0)
    assert short.day_index(T0 + 60) == short.day_index(T0) + 1


def test_the_daily_volume_is_spread_over_the_window_with_a_small_burst() -> None:
    cal = Calendar(WarmupSettings(window_start=8 * 3600.0, window_end=20 * 3600.0, burst=120.0, min_burst=1))
    assert cal.rate(43200) == pytest.approx(1.0)            # 43,200 over 12 hours
    assert cal.burst(43200) == pytest.approx(120.0)
    assert cal.burst(10) == 1.0                              # never below min_burst
    assert not cal.in_window(T0 + 7 * 3600)
    assert cal.in_window(T0 + 8 * 3600)
    assert not cal.in_window(T0 + 20 * 3600)
    assert cal.next_window_start(T0 + 3600) == T0 + 8 * 3600
    assert cal.next_window_start(T0 + 21 * 3600) == T0 + DAY + 8 * 3600


def test_windows_scale_with_a_short_day() -> None:
    cal = Calendar(WarmupSettings(day_length=86.4, window_start=43200.0, window_end=86400.0))
    assert not cal.in_window(T0 + 10)
    assert cal.in_window(T0 + 50)
    assert cal.rate(432) == pytest.approx(10.0)              # 432 over 43.2 seconds


@pytest.fixture(scope="module")
def catalog() -> IspCatalog:
    return IspCatalog(load_config(str(REPO / "conf" / "policy.toml")).policy.isps)


@pytest.mark.parametrize(("mx", "isp"), [
    (["gmail-smtp-in.l.google.com", "alt1.gmail-smtp-in.l.google.com"], "google"),
    (["ASPMX.L.GOOGLE.COM."], "google"),
    (["mta5.am0.yahoodns.net", "mta6.am0.yahoodns.net"], "yahoo"),
    (["mx-aol.mail.gm0.yahoodns.net"], "yahoo"),
    (["hotmail-com.olc.protection.outlook.com"], "microsoft"),
    (["contoso-com.mail.protection.outlook.com"], "office365"),
    (["mx01.mail.icloud.com"], "apple"),
    (["mx1a1.comcast.net"], "comcast"),
    (["mx00.gmx.net"], "gmx_webde"),
    (["mx-ha02.web.de"], "gmx_webde"),
    (["mxs.mail.ru"], "mailru"),
    (["mx.yandex.net"], "yandex"),
    (["mail.example.org"], "other"),
    ([], "other"),
])
def test_isps_are_recognised_from_mx_host_names(catalog: IspCatalog, mx: list[str], isp: str) -> None:
    assert catalog.recognise(mx) == isp


def test_one_matching_mx_host_is_enough(catalog: IspCatalog) -> None:
    assert catalog.recognise(["backup.example.org", "aspmx.l.google.com"]) == "google"
