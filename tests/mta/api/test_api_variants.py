"""A/B variants: a two-variant template batch split by weight, each recipient given one variant,
the variant in the message, its events and tracking, and the campaign report per variant."""

from __future__ import annotations

import email
import email.policy
from collections import Counter

import aiohttp

from mta.http.api.variants import Variant, assign, shares
from tests.mta.api.test_tracking_e2e import BROWSER, html_of, links, tracking
from tests.support.receiver import Script, free_port


def batch(recipients: list[str], **extra) -> dict:
    return {"from": "news@sender.example", "stream": "marketing",
            "template": {"text": "Hello {{ name }}", "html": "<p>Hi</p><a href=\"https://shop.example/x\">x</a>"},
            "substitutions": {"name": "you"}, "recipients": recipients,
            "variants": [{"name": "A", "subject": "Subject A"}, {"name": "B", "subject": "Subject B"}],
            "split": [75, 25], **extra}


def test_the_split_is_exact_and_deterministic_for_the_campaign() -> None:
    variants = [Variant("A", {}, 75), Variant("B", {}, 25)]
    addresses = [f"u{i}@example.test" for i in range(40)]
    first = assign("spring", addresses, variants)
    assert Counter(first) == {0: 30, 1: 10}
    assert assign("spring", list(reversed(addresses)), variants) == list(reversed(first))   # order-free
    assert assign("summer", addresses, variants) != first          # another campaign, another draw
    assert shares([1, 1, 1], 10) == [4, 3, 3] and sum(shares([0.2, 0.3, 0.5], 7)) == 7


async def test_two_variant_batch_carries_its_variant_and_is_reported_per_variant(start_api, world) -> None:
    bounced = "gone@example.test"
    rx = world.domain("example.test", script=Script(rcpt=lambda a, _n: "550 5.1.1 no such user"
                                                    if a == bounced else None))
    port = free_port(["127.0.0.1"])
    api = await start_api(**tracking(port))
    recipients = [f"user{i}@example.test" for i in range(11)] + [bounced]
    status, body, _h = await api.call("POST", "/v1/messages/batch", json=batch(recipients, campaign="spring"))
    assert status == 200 and body["accepted"] == 12 and body["campaign"] == "spring", body
    variant_of = {recipients[r["index"]]: r["variant"] for r in body["results"]}
    assert Counter(variant_of.values()) == {"A": 9, "B": 3}
    got = await rx.await_for(11)
    for m in got:
        msg = email.message_from_bytes(m.data, policy=email.policy.default)
        assert msg["Subject"] == f"Subject {variant_of[m.rcpt_tos[0]]}"
    # A person clicks in one A message and one B message; a scanner follows a link of another B message.
    by_variant: dict[str, list] = {"A": [], "B": []}
    for m in got:
        by_variant[variant_of[m.rcpt_tos[0]]].append(m)
    await api.mta.wait_event(lambda e: e["event"] == "bounced")
    await api.mta.wait_event(lambda e: len([x for x in api.mta.events() if x["event"] == "delivered"]) == 11)
    base = f"http://127.0.0.1:{port}"
    scanned = links(html_of(by_variant["B"][1].data), base)[0][0]
    async with aiohttp.ClientSession(headers={"User-Agent": BROWSER}) as http:
        async with http.get(scanned, allow_redirects=False) as r:      # seconds after delivery: a scanner
            assert r.status == 302
        api.mta.clock.advance(3600)
        for m in (by_variant["A"][0], by_variant["B"][0]):
            async with http.get(links(html_of(m.data), base)[0][0], allow_redirects=False) as r:
                assert r.status == 302
    await api.mta.wait_event(lambda e: len([x for x in api.mta.events() if x["event"] == "clicked"]) == 3)
    for e in api.mta.events():
        if e["event"] in ("accepted", "delivered", "bounced", "clicked") and e["recipient"] in variant_of:
            assert e["campaign"] == "spring" and e["variant"] == variant_of[e["recipient"]], e
    status, report, _h = await api.call("GET", "/v1/campaigns/spring")
    assert status == 200, report
    rows = {v["name"]: v for v in report["variants"]}
    b_bounced = int(variant_of[bounced] == "B")
    assert (rows["A"]["sent"], rows["B"]["sent"]) == (9, 3)
    assert rows["A"]["delivered"] + rows["B"]["delivered"] == 11
    assert (rows["A"]["bounced"], rows["B"]["bounced"]) == (1 - b_bounced, b_bounced)
    assert (rows["A"]["clicked"], rows["B"]["clicked"], rows["B"]["clicked_machine"]) == (1, 1, 1)
    assert report["total"]["sent"] == 12 and report["total"]["clicked"] == 2
    # Another tenant does not see it; an operator does.
    assert (await api.call("GET", "/v1/campaigns/spring", "b"))[0] == 404
    assert (await api.call("GET", "/v1/campaigns/spring", "op"))[1]["total"]["sent"] == 12


async def test_a_variant_batch_without_a_campaign_gets_one_and_bad_splits_are_422(start_api, world) -> None:
    world.domain("example.test")
    api = await start_api()
    status, body, _h = await api.call("POST", "/v1/messages/batch", json=batch(["a@example.test"]))
    assert status == 200 and body["campaign"].startswith("ab-")
    status, body, _h = await api.call("POST", "/v1/messages/batch", json=batch(["a@example.test"], split=[1]))
    assert status == 422 and body["error"]["field"] == "split"
    bad = batch(["a@example.test"])
    bad["variants"][1]["name"] = "A"
    status, body, _h = await api.call("POST", "/v1/messages/batch", json=bad)
    assert status == 422 and body["error"]["field"] == "variants[1].name"
    assert (await api.call("GET", "/v1/campaigns/nothing-here"))[0] == 404
