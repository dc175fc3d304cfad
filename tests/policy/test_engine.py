"""The engine wired to a store, driven by an injected clock: days pass in microseconds.

These run on the memory store; tests/policy/test_store.py runs the service over SQLite and Redis.
"""

from __future__ import annotations

from policy.engine import GrantRequest, Outcome, Policy
from policy.engine.settings import MailboxRule, PolicySettings, TenantSettings
from policy.engine.state import PairKey
from policy.service import PolicyService
from policy.store.memory_store import MemoryStore
from tests.policy.conftest import DAY, Clock, make_settings

GOOGLE = ("gmail-smtp-in.l.google.com", "alt1.gmail-smtp-in.l.google.com")
YAHOO = ("mta5.am0.yahoodns.net",)


def service(settings: PolicySettings, clock: Clock) -> PolicyService:
    return PolicyService(Policy(settings), MemoryStore(), clock, cache_seconds=0.0)


def ask(wanted: int, mx: tuple[str, ...] = GOOGLE, sources: tuple[str, ...] = ("ip1", "ip2"),
        domain: str = "example.test", tenant: str = "t1", mailbox: str = "", stream: str = "marketing") -> GrantRequest:
    site = "google" if mx == GOOGLE else "yahoo"
    return GrantRequest(site, mx, "default", sources, stream, domain, tenant, wanted, mailbox)


def outcome(source: str, outcome: str, count: int = 1, mx: tuple[str, ...] = GOOGLE, reason: str = "",
            code: int = 250, status: str = "2.0.0", domain: str = "example.test", mailbox: str = "") -> Outcome:
    return Outcome("site", mx, source, domain, "t1", "marketing", outcome, reason, code, status, count, mailbox)


async def granted(svc: PolicyService, *asks: GrantRequest) -> dict[str, int]:
    per_source: dict[str, int] = {}
    for grants in await svc.grant(list(asks)):
        for g in grants:
            per_source[g.source] = per_source.get(g.source, 0) + g.count
    return {s: n for s, n in per_source.items() if n}


async def send_for(svc: PolicyService, clock: Clock, seconds: float, step: float = 60.0, wanted: int = 50,
                   mx: tuple[str, ...] = GOOGLE, deliver: bool = True) -> dict[str, int]:
    """Asks every `step` seconds and reports everything granted as delivered."""
    total: dict[str, int] = {}
    end = clock.now + seconds
    while clock.now < end:
        got = await granted(svc, ask(wanted, mx))
        for source, n in got.items():
            total[source] = total.get(source, 0) + n
        if deliver and got:
            await svc.feedback([outcome(s, "delivered", n, mx) for s, n in got.items()])
        clock.advance(step)
    return total


async def test_a_first_grant_is_the_burst_of_each_source(clock: Clock) -> None:
    svc = service(make_settings(), clock)
    # day 0: 240 a day over 24 h with one hour of burst = 10 tokens per (IP, google)
    assert await granted(svc, ask(100)) == {"ip1": 10, "ip2": 10}
    assert await granted(svc, ask(100)) == {}


async def test_a_day_sends_its_volume_spread_over_the_day(clock: Clock) -> None:
    svc = service(make_settings(), clock)
    hours: list[int] = []
    for _hour in range(24):
        got = await send_for(svc, clock, 3600)
        hours.append(sum(got.values()))
    assert 470 <= sum(hours) <= 480                     # two IPs x 240
    assert max(hours) <= 2 * (10 + 10)                  # never more than burst + an hour's rate per IP


async def test_no_grant_outside_the_sending_window(clock: Clock) -> None:
    svc = service(make_settings(window_start=8 * 3600.0, window_end=20 * 3600.0), clock)
    [[lease]] = await svc.grant([ask(10)])
    assert lease.count == 0 and lease.retry_in == 8 * 3600
    clock.advance(8 * 3600)
    assert sum((await granted(svc, ask(10))).values()) > 0


async def test_a_healthy_fully_used_day_advances_and_the_next_day_allows_more(clock: Clock) -> None:
    svc = service(make_settings(), clock)
    first = await send_for(svc, clock, DAY, step=300)
    second = await send_for(svc, clock, DAY, step=300)
    assert first["ip1"] <= 240 < second["ip1"] <= 480
    status = {str(r.key): r for r in await svc.status()}
    assert status["ip|ip1|google"].state.day == 1
    assert [a.rule for a in await svc.history("ip|ip1|google")] == ["advance"]


async def test_without_feedback_a_day_is_not_counted_as_used(clock: Clock) -> None:
    svc = service(make_settings(), clock)
    await send_for(svc, clock, DAY, step=300, deliver=False)
    await granted(svc, ask(1))
    status = {str(r.key): r for r in await svc.status()}
    assert status["ip|ip1|google"].state.day == 0


async def test_a_throttle_backs_off_that_ip_and_isp_only(clock: Clock) -> None:
    svc = service(make_settings(), clock)
    await svc.feedback([outcome("ip1", "deferred", 2, reason="toomanyconn", code=421, status="4.7.28")])
    got = await granted(svc, ask(100))
    assert got == {"ip2": 10}                               # ip1 backs off from Google ...
    assert (await granted(svc, ask(100, YAHOO))).get("ip1") == 10   # ... not from Yahoo
    [action] = await svc.history("ip|ip1|google")
    assert action.rule == "throttle" and action.reply == "421 4.7.28 (toomanyconn)"
    clock.advance(600)                                      # after the back-off: half the rate ...
    [row] = [r for r in await svc.status() if str(r.key) == "ip|ip1|google"]
    assert row.factor == 0.5 and row.limit == 240           # ... but the day's volume is kept
    await svc.feedback([outcome("ip1", "delivered", 3, code=250)])    # a clean probe
    clock.advance(2 * 120)
    [row] = [r for r in await svc.status() if str(r.key) == "ip|ip1|google"]
    assert row.factor == 1.0                                # back to the earlier rate within minutes


async def test_a_refusal_says_when_to_ask_again(clock: Clock) -> None:
    svc = service(make_settings(), clock)
    await granted(svc, ask(100))
    [[lease]] = await svc.grant([ask(1)])
    assert lease.count == 0 and 0 < lease.retry_in <= 360       # one token every 360 s


async def test_a_block_pauses_and_rolls_back_the_ip(clock: Clock) -> None:
    svc = service(make_settings(), clock)
    await svc.set_day(PairKey("ip", "ip1", "google"), 2)
    await svc.feedback([outcome("ip1", "bounced", 1, reason="blocked", code=550, status="5.7.1")])
    assert "ip1" not in await granted(svc, ask(100))
    [row] = [r for r in await svc.status() if str(r.key) == "ip|ip1|google"]
    assert row.state.day == 0 and row.paused_until > clock.now


async def test_authentication_failures_pause_the_domain_on_every_isp(clock: Clock) -> None:
    svc = service(make_settings(), clock)
    await svc.feedback([outcome("ip1", "bounced", 1, reason="securityerror", code=550, status="5.7.26")])
    assert await granted(svc, ask(10)) == {}
    assert await granted(svc, ask(10, YAHOO)) == {}
    assert await granted(svc, ask(10, domain="other.test")) != {}    # other domains keep sending
    actions = await svc.history("domain|example.test|*")
    assert [a.rule for a in actions] == ["auth_failure"]


async def test_a_mailbox_schedule_caps_a_sender_mailbox(clock: Clock) -> None:
    settings = make_settings()
    settings.mailboxes = [MailboxRule("*@outreach.test", "outreach")]
    svc = service(settings, clock)
    total = 0
    for _ in range(24 * 6):
        for grants in await svc.grant([ask(5, mailbox="sam@outreach.test")]):
            total += sum(g.count for g in grants)
        clock.advance(600)
    assert total == 24                                   # the outreach schedule's day 0
    # a mailbox that matches no rule is not capped by it
    assert sum((await granted(svc, ask(50, mailbox="news@example.test"))).values()) > 0


async def test_a_tenant_quota_caps_its_day(clock: Clock) -> None:
    settings = make_settings()
    settings.tenants = {"small": TenantSettings(daily_quota=15)}
    svc = service(settings, clock)
    total = sum((await granted(svc, ask(100, tenant="small"))).values())
    clock.advance(3600)
    total += sum((await granted(svc, ask(100, tenant="small"))).values())
    assert total == 15


async def test_an_isp_without_warm_up_has_no_volume_limit(clock: Clock) -> None:
    svc = service(make_settings(), clock)
    got = await granted(svc, ask(400, mx=("mx.example.org",)))
    assert sum(got.values()) == 400


async def test_operator_pause_resume_and_isp_wide_pause(clock: Clock) -> None:
    svc = service(make_settings(), clock)
    await svc.pause(PairKey("ip", "ip1"))                  # ip1 on every ISP
    assert set(await granted(svc, ask(5))) == {"ip2"}
    assert set(await granted(svc, ask(5, YAHOO))) == {"ip2"}
    await svc.resume(PairKey("ip", "ip1"))
    await svc.pause(PairKey("isp", "yahoo"), duration=3600)
    assert await granted(svc, ask(5, YAHOO)) == {}
    assert await granted(svc, ask(5)) != {}
    clock.advance(3600)
    assert await granted(svc, ask(5, YAHOO)) != {}
    rules = [(a.rule, a.action) for a in await svc.history()]
    assert rules == [("operator", "pause"), ("operator", "resume"), ("operator", "pause")]


async def test_the_engine_is_deterministic_given_its_clock() -> None:
    async def run() -> list[tuple[str, int]]:
        clock = Clock()
        svc = service(make_settings(), clock)
        trace = []
        for i in range(300):
            for grants in await svc.grant([ask(7), ask(3, YAHOO)]):
                trace += [(g.source, g.count) for g in grants]
            if i % 50 == 0:
                await svc.feedback([outcome("ip1", "deferred", 1, reason="toomanyconn", code=421)])
            clock.advance(97)
        return trace

    assert await run() == await run()
