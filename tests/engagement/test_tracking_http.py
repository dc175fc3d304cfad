"""The tracking listener over real HTTP: redirects, the pixel, forged tokens, machine activity."""

from __future__ import annotations

import aiohttp
import pytest

from mta.http.tracking import PIXEL, Activity, TrackingServer
from mta.tracking.tokens import CLICK, OPEN, TrackingTokens
from tests.support.receiver import free_port

BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


class Clock:
    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
async def tracking():
    clock = Clock()
    tokens = TrackingTokens([b"secret"], clock=clock)
    seen: list[Activity] = []

    async def record(activity: Activity) -> None:
        seen.append(activity)

    delivered = {("Q1", "ann@x.test"): clock.t}
    server = TrackingServer(tokens, record, clock=clock, delivered_at=lambda q, r: delivered.get((q, r)))
    port = free_port(["127.0.0.1"])
    await server.start("127.0.0.1", port)
    async with aiohttp.ClientSession(headers={"User-Agent": BROWSER}) as http:
        yield tokens, seen, clock, http, f"http://127.0.0.1:{port}"
    await server.stop()


async def test_click_redirects_to_the_signed_link_and_records_once(tracking) -> None:
    tokens, seen, clock, http, base = tracking
    clock.t += 3600                                       # an hour after delivery: a person
    token = tokens.issue(CLICK, queue_id="Q1", recipient="ann@x.test", url="https://shop.example/p?id=7",
                         campaign="spring", issued_at=clock.t - 3600)
    async with http.get(f"{base}/c/{token}", allow_redirects=False) as r:
        assert r.status == 302 and r.headers["Location"] == "https://shop.example/p?id=7"
        assert "no-store" in r.headers["Cache-Control"]
    assert len(seen) == 1
    assert (seen[0].info.url, seen[0].info.campaign, seen[0].verdict.machine) == (
        "https://shop.example/p?id=7", "spring", False)


async def test_open_pixel(tracking) -> None:
    tokens, seen, _clock, http, base = tracking
    token = tokens.issue(OPEN, queue_id="Q1", recipient="ann@x.test")
    async with http.get(f"{base}/o/{token}.gif") as r:
        assert r.status == 200 and r.content_type == "image/gif" and await r.read() == PIXEL
    assert [(a.info.kind, a.verdict.machine) for a in seen] == [("o", False)]
    async with http.get(f"{base}/o/{token}", headers={"User-Agent": "Mozilla/5.0"}) as r:
        assert r.status == 200
    assert seen[-1].verdict.why == "apple_privacy_proxy"


@pytest.mark.parametrize("mangle", [lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"), lambda t: "x" + t,
                                    lambda t: t[:20], lambda _t: "../../etc/passwd"])
async def test_tampered_token_is_404_and_no_event(tracking, mangle) -> None:
    tokens, seen, _clock, http, base = tracking
    token = tokens.issue(CLICK, queue_id="Q1", recipient="ann@x.test", url="https://shop.example/")
    async with http.get(f"{base}/c/{mangle(token)}", allow_redirects=False) as r:
        assert r.status == 404 and "Location" not in r.headers
    assert seen == []


async def test_an_open_token_is_no_click(tracking) -> None:
    tokens, seen, _clock, http, base = tracking
    token = tokens.issue(OPEN, queue_id="Q1", recipient="ann@x.test")
    async with http.get(f"{base}/c/{token}", allow_redirects=False) as r:
        assert r.status == 404
    assert seen == []


async def test_scanner_following_every_link_at_delivery_is_machine(tracking) -> None:
    tokens, seen, clock, http, base = tracking
    links = [tokens.issue(CLICK, queue_id="Q1", recipient="ann@x.test", url=f"https://shop.example/{i}")
             for i in range(4)]
    clock.t += 2                                          # two seconds after delivery
    for token in links:
        async with http.head(f"{base}/c/{token}", allow_redirects=False) as r:
            assert r.status == 302
    assert [a.verdict.why for a in seen] == ["head_request"] * 4
    seen.clear()
    clock.t += 3600                                       # later, a GET burst with a browser agent
    for token in links:
        async with http.get(f"{base}/c/{token}", allow_redirects=False) as r:
            assert r.status == 302
    assert [a.verdict.machine for a in seen] == [False, False, True, True]


async def test_forwarded_for_is_believed_only_from_a_trusted_proxy(tracking) -> None:
    tokens, seen, clock, http, base = tracking
    clock.t += 3600
    token = tokens.issue(OPEN, queue_id="Q1", recipient="ann@x.test")
    async with http.get(f"{base}/o/{token}", headers={"X-Forwarded-For": "10.0.0.1, 17.1.2.3"}) as r:
        assert r.status == 200
    assert seen[-1].client_ip == "17.1.2.3" and seen[-1].verdict.why == "apple_privacy_proxy"
