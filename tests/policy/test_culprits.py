"""Punish the culprit, not the pair: the two emulated runs of issue 18, replayed through the service.

Run 1: a first send with 8.65% unknown users paused each ISP three seconds in and left 47 unknown
users untried. Run 2: a clean newsletter and a bad campaign (30% unknown users, its own sending
domain) shared one IP; the IP was paused at every ISP and the clean newsletter fell to zero.
"""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from policy.engine import GrantRequest, Outcome, Policy
from policy.engine.settings import PolicySettings, ScheduleSettings
from policy.engine.state import PairKey
from policy.service import PolicyService
from policy.store.memory_store import MemoryStore
from tests.policy.conftest import Clock, make_settings

GOOGLE = ("gmail-smtp-in.l.google.com",)


def settings() -> PolicySettings:
    s = make_settings()
    s.schedules["ip"] = ScheduleSettings([100000])      # room for the whole send at once
    return s


def service(clock: Clock, s: PolicySettings | None = None) -> PolicyService:
    return PolicyService(Policy(s or settings()), MemoryStore(), clock, cache_seconds=0.0)


def ask(wanted: int, domain: str, tenant: str = "t1", campaign: str = "") -> GrantRequest:
    return GrantRequest("gmail.com", GOOGLE, "default", ("ip1",), "marketing", domain, tenant, wanted,
                    campaign=campaign)


def outcomes(n_ok: int, n_unknown: int, domain: str, tenant: str = "t1", campaign: str = "") -> list[Outcome]:
    items = []
    if n_ok:
        items.append(Outcome("gmail.com", GOOGLE, "ip1", domain, tenant, "marketing", "delivered", "", 250,
                                  "2.0.0", n_ok, campaign=campaign))
    if n_unknown:
        items.append(Outcome("gmail.com", GOOGLE, "ip1", domain, tenant, "marketing", "hard_bounce",
                                  "userunknown", 550, "5.1.1", n_unknown, campaign=campaign))
    return items


async def send(svc: PolicyService, clock: Clock, recipients: list[bool], domain: str, batch: int = 20,
               tenant: str = "t1", campaign: str = "") -> int:
    """Sends `recipients` (True = an unknown user) in grant-sized batches with feedback after
    each, as the MTA does; returns how many were tried before policyd stopped granting."""
    tried = 0
    while tried < len(recipients):
        [lease] = [g for g in (await svc.grant([ask(batch, domain, tenant, campaign)]))[0]]
        if lease.count == 0:
            return tried
        chunk = recipients[tried:tried + lease.count]
        tried += len(chunk)
        await svc.feedback(outcomes(chunk.count(False), chunk.count(True), domain, tenant, campaign))
        clock.advance(0.05)
    return tried


def with_unknown(n: int, share: float, seed: int) -> list[bool]:
    rng = random.Random(seed)
    unknown = round(n * share)
    rows = [True] * unknown + [False] * (n - unknown)
    rng.shuffle(rows)
    return rows


@pytest.mark.parametrize("seed", range(10))
async def test_a_first_send_with_8_65_percent_unknown_users_tries_every_unknown_user(clock: Clock, seed: int) -> None:
    svc = service(clock)
    rows = with_unknown(543, 0.0865, seed)           # 47 unknown users, in random order
    assert await send(svc, clock, rows, "news.example.test") == len(rows)
    history = await svc.history()
    assert not [a for a in history if a.action == "pause"]
    # it is named, with its numbers, as the sender's list problem it is
    warnings = [a for a in history if a.rule == "hard_bounce_warning"]
    assert warnings and all("hard bounces" in a.reason and "sent" in a.reason for a in warnings)
    assert any(a.key == "domain|news.example.test|google" for a in warnings)


async def test_a_bad_campaign_with_its_own_domain_is_paused_and_the_clean_newsletter_flows(clock: Clock) -> None:
    svc = service(clock)
    # the clean newsletter's history on the IP, then both at once, interleaved
    assert await send(svc, clock, [False] * 200, "news.example.test") == 200
    bad = with_unknown(60, 0.3, seed=5)
    sent_bad = 0
    for i in range(0, 60, 10):
        sent_bad += await send(svc, clock, bad[i:i + 10], "promo.example.test", batch=10)
        assert await send(svc, clock, [False] * 10, "news.example.test", batch=10) == 10
    history = await svc.history()
    pauses = [a for a in history if a.action == "pause"]
    assert [a.key for a in pauses] == ["domain|promo.example.test|google"], pauses
    [pause] = pauses
    assert "sending domain promo.example.test on ip|ip1|google" in pause.reason
    assert "hard bounces" in pause.reason and "the rest of the pair" in pause.reason
    assert pause.reply == "550 5.1.1 (userunknown)"
    assert sent_bad < 60                                            # the bad domain was stopped ...
    assert (await svc.grant([ask(5, "promo.example.test")]))[0][0].count == 0
    assert await send(svc, clock, [False] * 100, "news.example.test") == 100    # ... the clean one was not


async def test_a_bad_campaign_on_a_shared_domain_pauses_the_campaign_alone(clock: Clock) -> None:
    svc = service(clock)
    assert await send(svc, clock, [False] * 200, "news.example.test") == 200
    bad = with_unknown(80, 0.3, seed=6)
    for i in range(0, 80, 10):
        await send(svc, clock, bad[i:i + 10], "news.example.test", batch=10, campaign="spring-sale")
        assert await send(svc, clock, [False] * 10, "news.example.test", batch=10) == 10
    pauses = [a for a in await svc.history() if a.action == "pause"]
    assert [a.key for a in pauses] == ["campaign|spring-sale|google"]
    assert (await svc.grant([ask(5, "news.example.test", campaign="spring-sale")]))[0][0].count == 0
    assert (await svc.grant([ask(5, "news.example.test")]))[0][0].count == 5


async def test_trouble_spread_over_many_senders_pauses_the_pair(clock: Clock) -> None:
    svc = service(clock)
    rows = [with_unknown(60, 0.25, seed=k) for k in range(4)]
    for i in range(0, 60, 10):            # four tenants, each with its own domain, all bad alike, at once
        for k in range(4):
            await send(svc, clock, rows[k][i:i + 10], f"d{k}.example.test", batch=10, tenant=f"t{k}")
    pauses = [a for a in await svc.history() if a.action == "pause"]
    assert "ip|ip1|google" in [a.key for a in pauses]
    pair = next(a for a in pauses if a.key == "ip|ip1|google")
    assert pair.rule == "hard_bounce_pause" and "not one sender's" in pair.reason
    [row] = [r for r in await svc.status([PairKey("ip", "ip1", "google")])]
    assert row.state.paused(clock.now)


async def test_one_complaint_in_the_first_100_deliveries_pauses_nothing(clock: Clock) -> None:
    svc = service(clock)
    await svc.feedback(outcomes(100, 0, "news.example.test"))
    await svc.feedback([Outcome("gmail.com", GOOGLE, "ip1", "news.example.test", "t1", "marketing",
                                     "complaint", "feedback", 0, "", 1)])
    assert await svc.history() == []
    assert (await svc.grant([ask(5, "news.example.test")]))[0][0].count == 5


async def interleaved_feedback(svc: PolicyService, sends: dict[tuple[str, str], list[bool]], batch: int) -> None:
    """Sends of (sender mailbox, campaign) on one domain, interleaved, `batch` recipients of each at
    a time, with feedback after each batch (how finely the MTA's feedback is cut depends on its load)."""
    for i in range(0, max(len(rows) for rows in sends.values()), batch):
        for (mailbox, campaign), rows in sends.items():
            chunk = rows[i:i + batch]
            if chunk:
                await svc.feedback([replace(o, mailbox=mailbox)
                                    for o in outcomes(chunk.count(False), chunk.count(True), "sender.example",
                                                      campaign=campaign)])


async def feedback_of_one_sender(svc: PolicyService, campaigns: dict[str, list[bool]], batch: int) -> None:
    """news@sender.example sends its campaigns interleaved (see interleaved_feedback)."""
    await interleaved_feedback(svc, {("news@sender.example", c): rows for c, rows in campaigns.items()}, batch)


@pytest.mark.parametrize("batch", [1, 3, 5, 10, 40])
async def test_a_bad_campaign_is_paused_alone_however_finely_its_feedback_arrives(clock: Clock, batch: int) -> None:
    """The sender and its domain carry both campaigns, so they reach `min_sample` first; while the
    bad campaign is still too small to judge, its trouble must not be pinned on them."""
    svc = service(clock)
    bad = [i % 8 != 0 for i in range(40)]           # 35 unknown users in 40
    await feedback_of_one_sender(svc, {"bought-list": bad, "newsletter": [False] * 40}, batch)
    pauses = [a for a in await svc.history() if a.action == "pause"]
    assert [a.key for a in pauses] == ["campaign|bought-list|google"], pauses


@pytest.mark.parametrize("batch", [1, 5, 10])
async def test_a_sender_bad_in_every_campaign_is_paused_before_each_campaign_has_enough_mail(
        clock: Clock, batch: int) -> None:
    """Trouble spread over the sender's campaigns is the sender's: no campaign carries it alone."""
    svc = service(clock)
    bad = [i % 8 != 0 for i in range(20)]
    await feedback_of_one_sender(svc, {f"c{k}": bad for k in range(4)}, batch)
    pauses = [a for a in await svc.history() if a.action == "pause"]
    assert [a.key for a in pauses] == ["sender|news@sender.example|google"], pauses


@pytest.mark.parametrize("batch", [1, 3, 5, 10, 40])
async def test_a_bad_sender_is_paused_alone_however_finely_its_feedback_arrives(clock: Clock, batch: int) -> None:
    """Its domain (on the IP and as a pair of its own) carries a clean sender too, so it reaches
    `min_sample` first; the bad sender's trouble must not be pinned on the domain meanwhile."""
    svc = service(clock)
    bad = [i % 8 != 0 for i in range(40)]
    await interleaved_feedback(svc, {("sloppy@sender.example", ""): bad,
                                     ("careful@sender.example", ""): [False] * 40}, batch)
    pauses = [a for a in await svc.history() if a.action == "pause"]
    assert [a.key for a in pauses] == ["sender|sloppy@sender.example|google"], pauses
