"""Scenario files: typed, validated, errors that name the bad key; the default scenarios load."""

from __future__ import annotations

from pathlib import Path

import pytest

from policy.sim.isp_defaults import DEFAULT_ISPS
from policy.sim.policy_setup import load_policy
from policy.sim.scenario import load_scenario
from tests.sim.conftest import POLICY, SCENARIOS, scenario, small
from warmup_base.configload import ConfigError


@pytest.mark.parametrize("name", ["clean.toml", "bad-list.toml", "outreach.toml"])
def test_default_scenarios_load_and_their_policy_overrides_validate(name: str) -> None:
    sc = load_scenario(str(SCENARIOS / name))
    cfg = load_policy(POLICY, sc.policy)
    assert sc.streams and sc.sources
    assert set(sc.isps) >= set(DEFAULT_ISPS)
    for stream in sc.streams:
        assert set(stream.sources) <= {s.name for s in sc.sources}
    if name == "outreach.toml":
        assert len(sc.streams[0].mailboxes) == 30
        assert len({m.split("@")[1] for m in sc.streams[0].mailboxes}) == 10
        assert cfg.policy.mailboxes[0].match == "*@reach*.example.test"
        assert cfg.policy.warmup.window_start == 8 * 3600


def test_bad_list_scenario_is_the_clean_one_plus_its_incident() -> None:
    clean = load_scenario(str(SCENARIOS / "clean.toml"))
    bad = load_scenario(str(SCENARIOS / "bad-list.toml"))
    assert bad.audience == clean.audience and bad.streams == clean.streams and bad.policy == clean.policy
    assert [(i.kind, i.day) for i in bad.incidents] == [("bad_list", 8)]
    assert not clean.incidents


@pytest.mark.parametrize(("changes", "key"), [
    ({"audience": {"isp_mix": {"aol": 1.0}}}, "audience.isp_mix.aol"),
    ({"audience": {"invalid_share": 1.5}}, "audience.invalid_share"),
    ({"audience": {"order": "alphabetical"}}, "audience.order"),
    ({"audience": {"sise": 10}}, "audience.sise"),
    ({"simulation": {"step": "2h"}}, "simulation.step"),
    ({"simulation": {"step": "7m"}}, "simulation.step"),
    ({"simulation": {"start": "March"}}, "simulation.start"),
    ({"streams": [{"name": "n", "kind": "newsletter", "sources": ["ip9"], "sending_domain": "x.test"}]},
     "streams[0].sources[0]"),
    ({"streams": [{"name": "n", "kind": "weekly", "sources": ["ip1"], "sending_domain": "x.test"}]},
     "streams[0].kind"),
    ({"streams": [{"name": "n", "kind": "transactional", "sources": ["ip1"], "sending_domain": "x.test"}]},
     "streams[0].daily"),
    ({"streams": [{"name": "o", "kind": "outreach", "sources": ["ip1"], "daily": 5}]}, "streams[0].mailboxes"),
    ({"incidents": [{"kind": "meteor", "day": 2}]}, "incidents[0].kind"),
    ({"incidents": [{"kind": "blocklist", "day": 2, "source": "ip7"}]}, "incidents[0].source"),
    ({"incidents": [{"kind": "isp_throttle", "day": 2}]}, "incidents[0].isp"),
    ({"incidents": [{"kind": "bad_list", "day": 0, "count": 5}]}, "incidents[0].day"),
    ({"isps": {"google": {"throttle_reply": "slow down please"}}}, "isps.google.throttle_reply"),
    ({"isps": {"google": {"block_reply": "250 2.0.0 OK"}}}, "isps.google.block_reply"),
    ({"isps": {"newisp": {"domain": "new.test"}}}, "isps.newisp.mx"),
    ({"isps": {"yahoo": {"reputation": 0.5}}}, "isps.yahoo.reputation"),
])
def test_errors_name_the_bad_key(changes: dict, key: str) -> None:
    with pytest.raises(ConfigError) as exc:
        scenario(small(**changes))
    assert str(exc.value).startswith(key), str(exc.value)


@pytest.mark.parametrize(("policy", "key"), [
    ({"windows": {}}, "policy.windows"),
    ({"warmup": {"burst_size": 5}}, "policy.warmup.burst_size"),
    ({"schedules": {"x": {"days": "many"}}}, "policy.schedules.x.days"),
])
def test_policy_overrides_are_checked_like_the_config(policy: dict, key: str) -> None:
    sc = scenario(small(policy=policy))
    with pytest.raises(ConfigError) as exc:
        load_policy(POLICY, sc.policy)
    assert str(exc.value).startswith(key), str(exc.value)


def test_policy_overrides_go_through_policyds_own_validation() -> None:
    sc = scenario(small(policy={"domains": [{"name": "news.example.test", "schedule": "nonesuch"}]}))
    with pytest.raises(ConfigError, match="no schedule named 'nonesuch'"):
        load_policy(POLICY, sc.policy)


def test_policy_overrides_layer_over_the_config() -> None:
    sc = scenario(small(policy={"rules": {"min_sample": 500}, "schedules": {"pool": {"days": [1, 2]}},
                               "sources": [{"name": "ip1", "start_day": 3}],
                               "mailboxes": [{"match": "*@first.test", "schedule": "pool"}]}))
    p = load_policy(POLICY, sc.policy).policy
    assert p.rules.min_sample == 500
    assert p.rules.throttle_decrease == 0.5          # untouched keys keep the config's values
    assert p.schedules["pool"].days == [1, 2] and "default" in p.schedules
    assert [s.start_day for s in p.sources if s.name == "ip1"] == [3]
    assert p.mailboxes[0].match == "*@first.test" and len(p.mailboxes) == 2


def test_isp_tables_override_only_the_keys_given() -> None:
    sc = scenario(small(isps={"google": {"surge": 3.0}, "tiny": {"mx": "mx.tiny.test", "domain": "tiny.test"}}))
    assert sc.isps["google"].surge == 3.0
    assert sc.isps["google"].throttle_reply.startswith("421 4.7.28")
    assert sc.isps["tiny"].unknown_user_reply == DEFAULT_ISPS["other"]["unknown_user_reply"]


def test_outreach_mailboxes_are_generated_per_domain() -> None:
    sc = scenario(small(streams=[{"name": "o", "kind": "outreach", "sources": ["ip1"], "daily": 10,
                                  "mailbox_domains": ["a.test", "b.test"], "mailboxes_per_domain": 2}]))
    assert sc.streams[0].mailboxes == ["sender1@a.test", "sender2@a.test", "sender1@b.test", "sender2@b.test"]


def test_a_base_that_names_itself_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text('base = "b.toml"\n')
    (tmp_path / "b.toml").write_text('base = "a.toml"\n')
    with pytest.raises(ConfigError, match="its own base"):
        load_scenario(str(tmp_path / "a.toml"))


def test_unreadable_and_broken_files_say_which(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read scenario"):
        load_scenario(str(tmp_path / "missing.toml"))
    (tmp_path / "bad.toml").write_text("[audience\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_scenario(str(tmp_path / "bad.toml"))
