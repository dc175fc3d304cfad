"""A/B variants: a two-variant template batch split by weight, each recipient given one variant,
the variant in the message, its events and tracking, and the campaign report per variant."""

from __future__ import annotations

import email
import email.policy
from collections import Counter

import aiohttp

from mta.http.api.variants import Variant, assign, shares
from tests.mta.api.conftest import Api
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


async def test_winner_after_sends_the_rest_with_the_best_variant_even_after_a_restart(start_api, start_mta,
                                                                                     world) -> None:
    rx = world.domain("example.test")
    port = free_port(["127.0.0.1"])
    api = await start_api(**tracking(port))
    recipients = [f"user{i}@example.test" for i in range(20)]
    request = batch(recipients, campaign="summer", split=[50, 50],
                    winner_after={"after": "4h", "metric": "clicked", "test_share": 0.2})
    status, body, _h = await api.call("POST", "/v1/messages/batch", json=request)
    assert status == 200 and body["accepted"] == 4 and body["held"] == 16, body
    tested = {recipients[r["index"]]: r["variant"] for r in body["results"] if "variant" in r}
    assert Counter(tested.values()) == {"A": 2, "B": 2}
    assert all("held_until" in r for r in body["results"] if "variant" not in r)
    got = await rx.await_for(4)
    await api.mta.wait_event(lambda e: len([x for x in api.mta.events() if x["event"] == "delivered"]) == 4)
    api.mta.clock.advance(600)
    b_message = next(m for m in got if tested[m.rcpt_tos[0]] == "B")
    link = links(html_of(b_message.data), f"http://127.0.0.1:{port}")[0][0]
    async with aiohttp.ClientSession(headers={"User-Agent": BROWSER}) as http, \
            http.get(link, allow_redirects=False) as r:       # a person clicks in B
        assert r.status == 302
    await api.mta.wait_event(lambda e: e["event"] == "clicked")
    status, report, _h = await api.call("GET", "/v1/campaigns/summer")
    assert report["winner_after"]["held"] == 16 and report["winner_after"]["winner"] is None
    assert await api.mta.daemon.api.releaser.release_due() == 0          # not due yet

    # A restart: the held share is on disk. Say 5 of them went out before the stop (the row's
    # progress is written with each message): the new daemon sends the other 11, all with B.
    def advance(store) -> None:
        store.db.execute("UPDATE campaign_holdback SET next_index = 5")
    await api.mta.daemon.spool.call(advance)
    await api.mta.daemon.stop()
    api_port = free_port(["127.0.0.1"])
    mta2 = await start_mta(clock=api.mta.clock, api={"listen": f"127.0.0.1:{api_port}"},
                           **tracking(free_port(["127.0.0.1"])))
    api2 = Api(mta2, f"http://127.0.0.1:{api_port}", api.session, api.keys)     # same spool, same keys
    api.mta.clock.advance(4 * 3600)
    assert await api2.mta.daemon.api.releaser.release_due() == 11
    late = await rx.await_for(15)
    late = late[4:]
    assert {email.message_from_bytes(m.data, policy=email.policy.default)["Subject"] for m in late} == {"Subject B"}
    assert {m.rcpt_tos[0] for m in late} == {r for r in recipients if r not in tested} - set(
        [r for r in recipients if r not in tested][:5])
    accepted = [e for e in api2.mta.events() if e["event"] == "accepted" and e["recipient"] in
                {m.rcpt_tos[0] for m in late}]
    assert {e["variant"] for e in accepted} == {"B"} and len(accepted) == 11
    assert await api2.mta.daemon.api.releaser.release_due() == 0          # done: the row is gone
    status, report, _h = await api2.call("GET", "/v1/campaigns/summer", "op")
    assert "winner_after" not in report and {v["name"]: v["sent"] for v in report["variants"]} == {"A": 2, "B": 13}


def test_the_winner_is_the_best_human_rate_per_delivered_message_and_a_tie_goes_to_the_first() -> None:
    from mta.http.api.holdback import pick_winner
    rows = [("A", "delivered", False, 10), ("A", "clicked", False, 2), ("A", "clicked", True, 9),
            ("B", "delivered", False, 4), ("B", "clicked", False, 1)]
    assert pick_winner(["A", "B"], rows, "clicked") == "B"          # 1/4 beats 2/10; machines do not count
    assert pick_winner(["A", "B"], rows, "opened") == "A"           # nobody opened: a tie
    assert pick_winner(["B", "A"], [], "clicked") == "B"


def test_erasing_a_held_back_recipient_keeps_the_progress_right() -> None:
    import sqlite3

    from mta.http.api import holdback as hb
    db = sqlite3.connect(":memory:")
    hb.ensure_table(db)
    entries = [{"to": f"u{i}@x.test", "substitutions": {}} for i in range(6)]
    hb.save(db, hb.Holdback("t", "c", "k", "n", "127.0.0.1", 0.0, "clicked",
                            {"base": {}, "variants": [], "recipients": entries}))
    hb.progress(db, hb.find(db, "c", "t"), 3, 0)                    # u0..u2 sent
    assert hb.erase_address(db, "u1@x.test") == 1 and hb.erase_address(db, "u4@x.test") == 1
    row = hb.find(db, "c", "t")
    assert [e["to"] for e in row.request["recipients"][row.next_index:]] == ["u3@x.test", "u5@x.test"]
