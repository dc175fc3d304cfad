"""[relays.NAME] at start-up (errors that name the key; a password never crosses a wire in plain
text; secrets stay out of reprs), and the grants relayed mail gets (RelayLimiter: the relay's own
limits by default, policyd's per-relay schedule under them with warmup = true)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import pytest

from mta.config import ConfigError, load_config
from mta.delivery.relay import Relays
from mta.delivery.relayconf import RelayHost, parse_relay_host
from mta.queue.limits import SiteLimits, StaticLimiter
from mta.queue.relaylimits import RelayLimiter
from tests.mta.proc import REPO
from tests.support.tomlw import dumps
from warmup_base.policy_protocol.model import GrantRequest, Lease, Outcome


def write(tmp_path: Any, relays: dict[str, Any], pools: dict[str, Any] | None = None, name: str = "mta.toml") -> str:
    doc = {"mta": {"hostname": "mta.test.example", "spool_dir": str(tmp_path / "spool")},
           "egress": {"sources": [{"name": "ip1", "address": "127.0.0.11"}],
                      "pools": pools if pools is not None else {"default": {"sources": ["ip1"], "relay": "esp"}}},
           "relays": relays}
    path = os.path.join(str(tmp_path), name)
    with open(path, "w") as f:
        f.write(dumps(doc))
    return path


def error_of(tmp_path: Any, relays: dict[str, Any], pools: dict[str, Any] | None = None) -> str:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, relays, pools))
    return str(err.value)


GOOD = {"hosts": ["smtp.esp.example:587", "smtp2.esp.example:465"], "username": "u", "password": "p"}


def test_a_good_relay_loads_with_tls_by_port_and_relative_files(tmp_path):
    (tmp_path / "esp.secret").write_text("from-file\n")
    cfg = load_config(write(tmp_path, {"esp": {"hosts": GOOD["hosts"], "username": "u",
                                               "password_file": "esp.secret"}}))
    assert cfg.egress.pools["default"].relay == "esp"
    assert cfg.relays["esp"].password_file == str(tmp_path / "esp.secret")
    relay = Relays.from_config(cfg.relays, {"default": "esp"}).for_pool("default")
    assert relay is not None and relay.site_key == "relay:esp"
    assert relay.hosts == (RelayHost("smtp.esp.example", 587, "starttls"), RelayHost("smtp2.esp.example", 465,
                                                                                     "implicit"))
    assert relay.password == "from-file"
    assert "from-file" not in repr(relay)
    assert "password='p'" not in repr(load_config(write(tmp_path, {"esp": GOOD})).relays["esp"])


@pytest.mark.parametrize(("value", "tls", "host"), [
    ("smtp.esp.example", "", RelayHost("smtp.esp.example", 587, "starttls")),
    ("smtp.esp.example", "implicit", RelayHost("smtp.esp.example", 465, "implicit")),
    ("smtp.esp.example:2525", "", RelayHost("smtp.esp.example", 2525, "starttls")),
    ("[2001:db8::1]:465", "", RelayHost("2001:db8::1", 465, "implicit")),
    ("2001:db8::1", "", RelayHost("2001:db8::1", 587, "starttls")),
    ("127.0.0.1:25", "none", RelayHost("127.0.0.1", 25, "none")),
])
def test_relay_hosts_parse(value, tls, host):
    assert parse_relay_host(value, "relays.esp.hosts[0]", tls) == host


def test_host_labels_as_events_show_them():
    assert RelayHost("smtp.esp.example", 465, "implicit").label == "smtp.esp.example:465"
    assert RelayHost("2001:db8::1", 587, "starttls").label == "[2001:db8::1]:587"


@pytest.mark.parametrize(("relays", "pools", "message"), [
    ({"esp": GOOD}, {"default": {"sources": ["ip1"], "relay": "espp"}},
     "egress.pools.default.relay: no relay named 'espp'"),
    ({"esp": {**GOOD, "hosts": []}}, None, "relays.esp.hosts: a relay needs at least one"),
    ({"esp": {**GOOD, "hosts": ["smtp.esp.example:99999"]}}, None, "relays.esp.hosts[0]: expected host:port"),
    ({"esp": {**GOOD, "hosts": ["ok.example:587", "user@bad:587"]}}, None, "relays.esp.hosts[1]: expected host:port"),
    ({"esp": {**GOOD, "hosts": ["smtp.esp.example:x"]}}, None, "relays.esp.hosts[0]: expected host:port"),
    ({"esp": {**GOOD, "tls": "ssl"}}, None, "relays.esp.tls: one of starttls, implicit, none"),
    ({"esp": {**GOOD, "tls": "none", "hosts": ["127.0.0.1:25", "smtp.esp.example:25"]}}, None,
     "relays.esp.tls: \"none\" would send the mail and the relay password in plain text to smtp.esp.example "
     "(relays.esp.hosts[1])"),
    ({"esp": {"hosts": ["192.0.2.7:25"], "tls": "none"}}, None, "would send the mail in plain text to 192.0.2.7"),
    ({"esp": {"hosts": ["smtp.esp.example"], "username": "u"}}, None, "relays.esp.password_file: required"),
    ({"esp": {"hosts": ["smtp.esp.example"], "password": "p"}}, None, "relays.esp.username: required"),
    ({"esp": {**GOOD, "password_file": "x"}}, None, "give one, not both"),
    ({"esp": {"hosts": ["smtp.esp.example"], "username": "u", "password_file": "/nonexistent/esp.secret"}}, None,
     "relays.esp.password_file: no such file: /nonexistent/esp.secret"),
    ({"esp": {**GOOD, "ca_file": "/nonexistent/ca.pem"}}, None, "relays.esp.ca_file: no such file"),
    ({"esp": {**GOOD, "max_connections": 0}}, None, "relays.esp.max_connections: must be at least 1"),
    ({"esp": {**GOOD, "rate_per_minute": -1}}, None, "relays.esp.rate_per_minute"),
    ({"esp": {**GOOD, "pasword": "typo"}}, None, "relays.esp.pasword: unknown key"),
])
def test_bad_relay_config_names_the_key(tmp_path, relays, pools, message):
    assert message in error_of(tmp_path, relays, pools)


def test_plain_text_is_allowed_to_loopback_only(tmp_path):
    cfg = load_config(write(tmp_path, {"esp": {**GOOD, "tls": "none", "hosts": ["127.0.0.1:10025", "[::1]:10025",
                                                                                 "localhost:10025"]}}))
    assert cfg.relays["esp"].tls == "none"


def test_empty_password_file_and_bad_ca_file_are_refused(tmp_path):
    (tmp_path / "empty.secret").write_text("\n")
    (tmp_path / "ca.pem").write_text("not a certificate\n")
    empty = {"hosts": ["smtp.esp.example"], "username": "u", "password_file": str(tmp_path / "empty.secret")}
    assert "relays.esp.password_file:" in error_of(tmp_path, {"esp": empty}) and "is empty" in error_of(
        tmp_path, {"esp": empty})
    assert "relays.esp.ca_file: not a PEM certificate file" in error_of(
        tmp_path, {"esp": {**GOOD, "ca_file": str(tmp_path / "ca.pem")}})


def test_check_config_reports_a_relay_error_without_the_password(tmp_path):
    path = write(tmp_path, {"esp": {"hosts": ["smtp.esp.example:25"], "tls": "none", "username": "u",
                                    "password": "hunter2-secret"}})
    res = subprocess.run([sys.executable, "-m", "mta.cli", "check-config", "--config", path], cwd=REPO,
                         env={**os.environ, "PYTHONPATH": REPO}, capture_output=True, text=True, timeout=60)
    assert res.returncode != 0 and "relays.esp.tls" in res.stderr
    assert "hunter2-secret" not in res.stderr + res.stdout


# ---------------------------------------------------------------- grants for relayed mail

class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class RecordingInner:
    """A real StaticLimiter behind a recorder: what the relay limiter passes on is the behaviour
    under test (policyd's own answers are tested with policyd, in test_relay.py)."""

    def __init__(self, clock: Clock, rate: float = 0.0) -> None:
        self.static = StaticLimiter(limits_for=lambda _s, _m: SiteLimits(10, 50, rate), weights={}, clock=clock)
        self.asked: list[GrantRequest] = []
        self.told: list[Outcome] = []

    async def request(self, requests: Sequence[GrantRequest]) -> list[Lease]:
        self.asked.extend(requests)
        return self.static.grant(requests)

    async def feedback(self, outcomes: Sequence[Outcome]) -> None:
        self.told.extend(outcomes)


def relays_of(tmp_path: Any, **relay: Any) -> Relays:
    cfg = load_config(write(tmp_path, {"esp": {**GOOD, **relay}}))
    return Relays.from_config(cfg.relays, {"default": "esp"})


def ask(site: str, wanted: int) -> GrantRequest:
    return GrantRequest(site, ("mx.example",), "default", ("ip1",), "marketing", "sender.example", "", wanted)


def outcome(site: str) -> Outcome:
    return Outcome(site, (), "ip1", "sender.example", "", "marketing", "delivered", "", 250, "2.0.0")


async def test_relay_mail_is_granted_by_the_relay_rate_and_never_reaches_policyd(tmp_path):
    clock = Clock()
    inner = RecordingInner(clock)
    limiter = RelayLimiter(inner, relays_of(tmp_path, rate_per_minute=6, max_connections=2).by_site, {}, clock)
    leases = await limiter.request([ask("relay:esp", 10), ask("gmail.example", 7)])
    relay_leases = [x for x in leases if x.request == 0]
    assert sum(x.count for x in relay_leases) == 6 and {x.max_connections for x in relay_leases} == {2}
    assert [x.count for x in leases if x.request == 1] == [7]
    assert [a.site for a in inner.asked] == ["gmail.example"]
    [refused] = await limiter.request([ask("relay:esp", 1)])
    assert refused.count == 0 and refused.retry_after == pytest.approx(clock.now + 10.0)
    assert "rate_per_minute" in refused.why
    clock.now += 10.0                      # one token a ten seconds
    [again] = await limiter.request([ask("relay:esp", 5)])
    assert again.count == 1
    await limiter.feedback([outcome("relay:esp"), outcome("gmail.example")])
    assert [o.site for o in inner.told] == ["gmail.example"]


async def test_with_warmup_policyd_is_asked_within_the_relay_cap_and_unused_tokens_return(tmp_path):
    clock = Clock()
    inner = RecordingInner(clock, rate=3.0)          # "policyd" grants 3 at first
    limiter = RelayLimiter(inner, relays_of(tmp_path, rate_per_minute=5, warmup=True,
                                            messages_per_connection=20).by_site, {}, clock)
    leases = await limiter.request([ask("relay:esp", 8)])
    assert [a.wanted for a in inner.asked] == [5]                    # capped by the relay first
    assert sum(x.count for x in leases) == 3 and {x.request for x in leases} == {0}
    assert {x.messages_per_connection for x in leases} == {20}      # the relay's figure is lower
    inner.static = StaticLimiter(limits_for=lambda _s, _m: SiteLimits(10, 50), weights={}, clock=clock)
    await limiter.request([ask("relay:esp", 8)])
    assert inner.asked[-1].wanted == 2        # the 2 tokens policyd left unused came back, nothing more yet
    await limiter.feedback([outcome("relay:esp")])
    assert [o.site for o in inner.told] == ["relay:esp"]


async def test_the_inner_limiters_extras_stay_visible(tmp_path):
    class WithSubscribe(RecordingInner):
        def subscribe(self, _callback: Any) -> None:
            pass

    limiter = RelayLimiter(WithSubscribe(Clock()), relays_of(tmp_path).by_site, {}, Clock())
    assert callable(getattr(limiter, "subscribe", None))
    assert getattr(RelayLimiter(RecordingInner(Clock()), {}, {}, Clock()), "subscribe", None) is None


def test_a_relay_host_that_failed_rests_behind_the_others_then_comes_first_again():
    from mta.delivery.relay import HOST_RESTS, HostHealth
    from mta.delivery.relayconf import RelayHost

    now = [1000.0]
    health = HostHealth(lambda: now[0])
    a, b, c = (RelayHost(f"h{i}.example", 587, "starttls") for i in range(3))
    assert health.order((a, b, c)) == [a, b, c]
    health.failed(a.label)
    health.failed(b.label)
    assert health.order((a, b, c)) == [c, a, b]          # resting hosts last, never left out
    health.worked(b.label)
    assert health.order((a, b, c)) == [b, c, a]
    now[0] += HOST_RESTS + 0.1
    assert health.order((a, b, c)) == [a, b, c]
