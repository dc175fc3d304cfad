"""Open and click tracking end to end: a message through the API or SMTP to an aiosmtpd receiver,
its tracked link and pixel fetched over HTTP from the tracking listener, the events that follow,
machine activity, tampering, and what the engagement store learns."""

from __future__ import annotations

import email
import email.policy
import os
import re

import aiohttp

from tests.compliance.verifiers import dkimpy_results
from tests.mta.conftest import message
from tests.mta.test_compliance_e2e import publish, write_key
from tests.support.receiver import free_port

BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


def tracking(port: int, **extra) -> dict:
    return {"tracking": {"enabled": True, "listen": f"127.0.0.1:{port}", "base_url": f"http://127.0.0.1:{port}",
                         "streams": ["marketing"], **extra}}


def html_of(raw: bytes) -> str:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    return next(p.get_content() for p in msg.walk() if p.get_content_type() == "text/html")


def links(html: str, base: str) -> tuple[list[str], list[str]]:
    clicks = re.findall(re.escape(base) + r"/c/[A-Za-z0-9_-]+", html)
    opens = re.findall(re.escape(base) + r"/o/[A-Za-z0-9_-]+", html)
    return clicks, opens


HTML = ('<html><body><p>Hello {{ name }}</p><a href="https://shop.example/sale?x=1&amp;y=2">Sale</a>'
        '<a href="https://shop.example/about">About</a><a href="mailto:help@shop.example">Help</a></body></html>')


async def test_api_message_is_tracked_and_clicks_and_opens_become_events(start_api, world) -> None:
    rx = world.domain("example.test")
    port = free_port(["127.0.0.1"])
    api = await start_api(**tracking(port))
    sent = await api.send({"from": "news@sender.example", "to": ["ann@example.test"], "subject": "Sale",
                           "html": HTML.replace("{{ name }}", "Ann"), "text": "Hello Ann", "stream": "marketing",
                           "campaign": "winter"})
    [got] = await rx.await_for(1)
    base = f"http://127.0.0.1:{port}"
    html = html_of(got.data)
    clicks, opens = links(html, base)
    assert len(clicks) == 2 and len(opens) == 1
    assert "mailto:help@shop.example" in html and "https://shop.example/" not in html
    await api.mta.wait_event(lambda e: e["event"] == "delivered")
    api.mta.clock.advance(3600)        # a person, an hour later
    async with aiohttp.ClientSession(headers={"User-Agent": BROWSER}) as http:
        async with http.get(clicks[0], allow_redirects=False) as r:
            assert r.status == 302 and r.headers["Location"] == "https://shop.example/sale?x=1&y=2"
        async with http.get(opens[0]) as r:
            assert r.status == 200 and r.content_type == "image/gif"
        # A changed MAC byte (not the last base64 character, whose low bits may carry nothing).
        tampered = clicks[1][:-6] + ("B" if clicks[1][-6] == "A" else "A") + clicks[1][-5:]
        async with http.get(tampered, allow_redirects=False) as r:
            assert r.status == 404
    [clicked] = await api.mta.wait_event(lambda e: e["event"] == "clicked")
    [opened] = await api.mta.wait_event(lambda e: e["event"] == "opened")
    assert (clicked["queue_id"], clicked["recipient"], clicked["url"], clicked["campaign"], clicked["tenant"]) == (
        sent["id"], "ann@example.test", "https://shop.example/sale?x=1&y=2", "winter", "tenant-a")
    assert clicked["machine"] is False and opened["machine"] is False
    assert len([e for e in api.mta.events() if e["event"] in ("clicked", "opened")]) == 2   # the forgery wrote none
    await api.mta.daemon.engagement.recorder.flush()
    record = api.mta.daemon.engagement.store.get("ann@example.test", api.mta.clock())
    assert record is not None and (record.opens, record.clicks) == (1, 1) and record.score > 3.9


async def test_scanner_at_delivery_is_machine_and_does_not_count(start_api, world) -> None:
    rx = world.domain("example.test")
    port = free_port(["127.0.0.1"])
    api = await start_api(**tracking(port))
    await api.send({"from": "news@sender.example", "to": ["bob@example.test"], "subject": "Sale", "html": HTML,
                    "stream": "marketing"})
    [got] = await rx.await_for(1)
    clicks, opens = links(html_of(got.data), f"http://127.0.0.1:{port}")
    await api.mta.wait_event(lambda e: e["event"] == "delivered")
    async with aiohttp.ClientSession(headers={"User-Agent": BROWSER}) as http:
        for url in clicks:                              # every link within seconds of delivery
            async with http.get(url, allow_redirects=False) as r:
                assert r.status == 302
        async with http.get(opens[0], headers={"User-Agent": "Mozilla/5.0"}) as r:     # Apple's proxy
            assert r.status == 200
    events = await api.mta.wait_event(lambda e: e["event"] in ("clicked", "opened"), n=3)
    assert all(e["machine"] for e in events)
    assert {e["reason"] for e in events} == {"fast_click", "apple_privacy_proxy"}
    await api.mta.daemon.engagement.recorder.flush()
    record = api.mta.daemon.engagement.store.get("bob@example.test", api.mta.clock())
    assert record is not None and record.score == 0 and record.clicks == 0


async def test_untracked_cases_are_left_alone(start_api, world) -> None:
    rx = world.domain("example.test")
    port = free_port(["127.0.0.1"])
    api = await start_api(**tracking(port))
    # a transactional message; a marketing one with track: false; one with two recipients
    await api.send({"from": "app@sender.example", "to": ["c1@example.test"], "subject": "Reset", "html": HTML})
    await api.send({"from": "news@sender.example", "to": ["c2@example.test"], "subject": "x", "html": HTML,
                    "stream": "marketing", "track": False})
    await api.send({"from": "news@sender.example", "to": ["c3@example.test", "c4@example.test"], "subject": "x",
                    "html": HTML, "stream": "marketing"})
    # over SMTP, turned off by the header (which is then removed)
    await api.mta.send("news@sender.example", ["c5@example.test"], message(
        extra_headers="X-Stream: marketing\r\nX-Track: no\r\nContent-Type: text/html\r\n",
        body='<a href="https://shop.example/">x</a>'))
    received = await rx.await_for(4)
    for got in received:
        assert b"/c/" not in got.data and b"/o/" not in got.data and b"X-Track" not in got.data


async def test_smtp_message_is_tracked_and_dkim_signed_over_the_rewritten_body(start_mta, world, dns_server,
                                                                              tmp_path) -> None:
    rx = world.domain("example.test")
    port = free_port(["127.0.0.1"])
    key_path = os.path.join(tmp_path, "sender.example.s1.key")
    write_key(key_path)
    records = publish(dns_server, key_path, "sender.example", "s1")
    mta = await start_mta(dkim={"keys": [{"domain": "sender.example", "selector": "s1", "key_file": key_path}]},
                          **tracking(port))
    await mta.send("news@sender.example", ["dee@example.test"], message(
        extra_headers="X-Stream: marketing\r\nContent-Type: text/html; charset=utf-8\r\n",
        body='<html><body><a href="https://shop.example/p">p</a></body></html>', sender="news@sender.example"))
    [got] = await rx.await_for(1)
    clicks, opens = links(html_of(got.data), f"http://127.0.0.1:{port}")
    assert len(clicks) == 1 and len(opens) == 1
    assert dkimpy_results(got.data, records) == [True]
