"""policy.toml: typed, validated at start-up, errors naming the bad key; includes and relative paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from policy.config import ConfigError, load_config
from policy.store import StoreError, sqlite_path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


MINIMAL = '[schedules.default]\ndays = [10, 20]\n'


def test_defaults_fill_what_a_minimal_file_leaves_open(tmp_path: Path) -> None:
    cfg = load_config(str(write(tmp_path / "p.toml", MINIMAL)))
    assert cfg.policyd.listen == "127.0.0.1:7025"
    assert cfg.policyd.state == "sqlite:///var/lib/warmup-mta/policy.db"
    assert cfg.metrics.listen == ""
    assert cfg.policy.warmup.advance_min_usage == 0.8 and cfg.policy.rules.hard_bounce_pause == 0.10


def test_includes_are_read_first_and_the_including_file_wins(tmp_path: Path) -> None:
    write(tmp_path / "conf.d" / "isps.toml", '[isps.google]\nmx = ["*.google.com"]\nmax_connections = 3\n'
                                            '[isps.yahoo]\nmx = ["*.yahoodns.net"]\n')
    cfg = load_config(str(write(tmp_path / "p.toml", '[policyd]\ninclude = ["conf.d/isps.toml"]\n'
                                '[isps.google]\nmax_connections = 7\n' + MINIMAL)))
    assert cfg.policy.isps["google"].max_connections == 7
    assert cfg.policy.isps["google"].mx == ["*.google.com"]
    assert list(cfg.policy.isps) == ["google", "yahoo"]


def test_an_include_loop_is_an_error(tmp_path: Path) -> None:
    write(tmp_path / "a.toml", '[policyd]\ninclude = ["b.toml"]\n')
    write(tmp_path / "b.toml", '[policyd]\ninclude = ["a.toml"]\n')
    with pytest.raises(ConfigError, match="includes itself"):
        load_config(str(tmp_path / "a.toml"))


@pytest.mark.parametrize(("state", "expected"), [
    ("sqlite:///abs/policy.db", "/abs/policy.db"),
    ("sqlite:///./var/policy.db", "{base}/var/policy.db"),
    ("sqlite:///../var/policy.db", "{parent}/var/policy.db"),
    ("sqlite://var/policy.db", "{base}/var/policy.db"),
])
def test_sqlite_state_paths_resolve_against_the_config_directory(tmp_path: Path, state: str,
                                                                 expected: str) -> None:
    base = tmp_path / "conf"
    cfg = load_config(str(write(base / "p.toml", f'[policyd]\nstate = "{state}"\n' + MINIMAL)))
    assert cfg.policyd.state == "sqlite://" + expected.format(base=base, parent=tmp_path)


def test_unix_sockets_resolve_against_the_config_directory(tmp_path: Path) -> None:
    cfg = load_config(str(write(tmp_path / "p.toml", '[policyd]\nlisten = "unix:run/p.sock"\n'
                                'also_listen = ["127.0.0.1:7099", "unix:/abs/p.sock"]\n' + MINIMAL)))
    assert cfg.listen_addresses == [f"unix:{tmp_path}/run/p.sock", "127.0.0.1:7099", "unix:/abs/p.sock"]


def test_redis_state_urls_are_kept_as_given(tmp_path: Path) -> None:
    cfg = load_config(str(write(tmp_path / "p.toml", '[policyd]\nstate = "redis://10.0.0.5:6379/2"\n' + MINIMAL)))
    assert cfg.policyd.state == "redis://10.0.0.5:6379/2"


def test_a_sqlite_url_without_a_file_is_refused() -> None:
    with pytest.raises(StoreError, match="no file name"):
        sqlite_path("sqlite://")


@pytest.mark.parametrize(("text", "key"), [
    ('[policyd]\nlisten = "nowhere"\n', "policyd.listen"),
    ('[policyd]\nstate = "postgres://x"\n', "policyd.state"),
    ('[policyd]\nlog_level = "loud"\n', "policyd.log_level"),
    ('[metrics]\nlisten = "x"\n', "metrics.listen"),
    ('[warmup]\nip_schedule = "fast"\n', "warmup.ip_schedule"),
    ('[warmup]\nwindow_start = "20h"\nwindow_end = "8h"\n', "warmup.window_start"),
    ('[warmup]\nday_length = 0\n', "warmup.day_length"),
    ('[warmup]\nadvance_min_usage = 1.5\n', "warmup.advance_min_usage"),
    ('[warmup]\nburst = "soon"\n', "warmup.burst"),
    ('[leases]\nmax_messages = 0\n', "leases.max_messages"),
    ('[rules]\nthrottle_decrease = 1.5\n', "rules.throttle_decrease"),
    ('[rules]\ncomplaint_hold = 0.01\ncomplaint_pause = 0.003\n', "rules.complaint_hold"),
    ('[rules]\nthrottle_backoff = "2h"\nthrottle_backoff_max = "1h"\n', "rules.throttle_backoff_max"),
    ('[isps.acme]\nmx = ["*.acme.test"]\nmax_connections = 0\n', "isps.acme.max_connections"),
    ('[isps.acme]\nmx = ["*.acme.test"]\nip_schedule = "x"\n', "isps.acme.ip_schedule"),
    ('[[sources]]\nname = "ip1"\n[[sources]]\nname = "ip1"\n', "sources[1].name"),
    ('[[sources]]\nname = "ip1"\nstart_day = -1\n', "sources[0].start_day"),
    ('[[domains]]\nname = ""\n', "domains[0].name"),
    ('[tenants.acme]\ndaily_quota = -5\n', "tenants.acme.daily_quota"),
    ('[schedules.empty]\ndays = []\n', "schedules.empty.days"),
    ('[schedules.neg]\ndays = [5, -1]\n', "schedules.neg.days[1]"),
    ('[classes]\nthrottled = "toomanyconn"\n', "classes.throttled"),
    ('[surprise]\nx = 1\n', "surprise: unknown key"),
])
def test_errors_name_the_bad_key(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(str(write(tmp_path / "p.toml", MINIMAL + text)))
    assert key in str(info.value)


def test_minimal_config_without_schedules_starts_without_warmup(tmp_path):
    # The benchmark harness writes only [policyd] listen/state and [metrics] listen.
    path = tmp_path / "policy.toml"
    path.write_text('[policyd]\nlisten = "127.0.0.1:7025"\nstate = "sqlite:///policy.db"\n'
                    '[metrics]\nlisten = "127.0.0.1:9102"\n')
    cfg = load_config(str(path))
    assert cfg.policy.warmup.ip_schedule == "" and cfg.policy.warmup.domain_schedule == ""


def test_explicit_unknown_schedule_is_still_an_error(tmp_path):
    path = tmp_path / "policy.toml"
    path.write_text('[policyd]\nlisten = "127.0.0.1:7025"\n[warmup]\nip_schedule = "default"\n')
    with pytest.raises(ConfigError, match=r"warmup\.ip_schedule"):
        load_config(str(path))


def test_a_key_that_is_no_longer_used_still_loads_with_a_warning(tmp_path: Path, caplog) -> None:
    # rules.recovery_step meant additive recovery; an operator's old file must keep working.
    cfg = load_config(str(write(tmp_path / "p.toml", MINIMAL + "\n[rules]\nrecovery_step = 0.1\n")))
    assert cfg.policy.rules.recovery_step == 0.1
    assert "recovery_step is no longer used" in caplog.text
