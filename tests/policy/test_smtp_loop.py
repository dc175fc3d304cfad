"""The whole feedback loop against real SMTP peers: aiosmtpd receivers stand in for two ISPs.

A small delivery loop (the test's, not the MTA's: the MTA's own end-to-end tests come with the
MTA) asks policyd for leases through PolicyClient, delivers with aiosmtplib, and reports every
reply as feedback. "Google" starts answering 421 4.7.28 after a few messages; policyd must back
that (IP, ISP) off while "Yahoo" keeps receiving.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from typing import Any

import aiosmtplib
import pytest
from aiosmtpd.controller import Controller

from policy.engine import Policy
from policy.server import PolicyServer
from policy.service import PolicyService
from policy.store.sqlite_store import SqliteStore
from tests.policy.conftest import free_port, make_settings
from warmup_base.policy_protocol.client import PolicyClient
from warmup_base.policy_protocol.model import GrantRequest, Outcome

SITES = {"google": ("gmail-smtp-in.l.google.com",), "yahoo": ("mta5.am0.yahoodns.net",)}


class Receiver:
    """An ISP's MX: accepts `accept_first` messages, then rate-limits the sender like Gmail does."""

    def __init__(self, accept_first: int | None) -> None:
        self.accept_first = accept_first
        self.accepted = 0
        self.refused = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.accept_first is not None and self.accepted >= self.accept_first:
            self.refused += 1
            return ("421 4.7.28 Our system has detected an unusual rate of unsolicited mail originating "
                    "from your IP address. To protect our users from spam, mail sent from your IP address "
                    "has been temporarily rate limited.")
        self.accepted += 1
        return "250 2.0.0 OK"


@pytest.fixture
async def receivers() -> AsyncIterator[dict[str, tuple[Receiver, int]]]:
    found = {}
    controllers = []
    for site, accept_first in (("google", 6), ("yahoo", None)):
        receiver = Receiver(accept_first)
        port = free_port()
        controller = Controller(receiver, hostname="127.0.0.1", port=port)
        controller.start()
        controllers.append(controller)
        found[site] = (receiver, port)
    yield found
    for controller in controllers:
        controller.stop()


async def deliver(site: str, port: int, source: str) -> Outcome:
    """One message, one reply, classified the way bounce_parser would for these two replies."""
    message = f"From: a@example.test\r\nTo: b@{site}.test\r\nSubject: hi\r\n\r\nhello\r\n"
    try:
        await aiosmtplib.send(message, sender="a@example.test", recipients=[f"b@{site}.test"], hostname="127.0.0.1",
                              port=port, timeout=5)
        code, status, outcome, reason = 250, "2.0.0", "delivered", ""
    except aiosmtplib.SMTPResponseException as exc:
        code = exc.code
        match = re.match(r"(\d\.\d+\.\d+)", exc.message)
        status = match.group(1) if match else ""
        outcome, reason = ("deferred", "toomanyconn") if status == "4.7.28" else ("bounced", "undefined")
    return Outcome(site, SITES[site], source, "example.test", "t1", "marketing", outcome, reason, code, status)


async def test_throttle_replies_back_off_one_isp_while_the_other_keeps_receiving(
        tmp_path: Any, receivers: dict[str, tuple[Receiver, int]]) -> None:
    service = PolicyService(Policy(make_settings(days=[5000])), SqliteStore(str(tmp_path / "p.db")), time.time,
                            cache_seconds=0.0)
    server = PolicyServer(service)
    [address] = await server.start(["127.0.0.1:0"])
    client = PolicyClient(address)
    sent = {"google": 0, "yahoo": 0}
    refused_leases = {"google": 0, "yahoo": 0}
    try:
        for _round in range(8):
            requests = [GrantRequest(site, SITES[site], "default", ("ip1",), "marketing", "example.test", "t1", 3)
                        for site in SITES]
            outcomes = []
            for lease in await client.request(requests):
                if lease.count == 0:
                    refused_leases[lease.site] += 1
                    assert lease.retry_after > time.time()
                for _ in range(lease.count):
                    outcomes.append(await deliver(lease.site, receivers[lease.site][1], lease.source))
                    sent[lease.site] += 1
            await client.feedback(outcomes)
            assert await client.flush()
    finally:
        await client.close()
        await server.stop(1.0)

    google, yahoo = receivers["google"][0], receivers["yahoo"][0]
    assert yahoo.accepted == 8 * 3 and refused_leases["yahoo"] == 0
    assert google.accepted == 6
    assert 1 <= google.refused <= 3                 # only what was leased before the feedback arrived
    assert refused_leases["google"] >= 5            # then policyd stopped granting to Google
    [action] = await service.history("ip|ip1|google")
    assert (action.rule, action.action) == ("throttle", "decrease")
    assert action.reply.startswith("421 4.7.28")
    await service.store.close()
