"""Operator commands over the wire (what the MTA's console uses): the same operations as the
`policyd` command line, run by a real policyd server through the MTA's PolicyClient."""

from __future__ import annotations

import pytest

from policy import operations
from policy.engine import Policy
from policy.service import PolicyService
from tests.policy.conftest import Clock, Running, make_settings
from tests.policy.test_client import delivered, request
from warmup_base.policy_protocol.client import PolicyClient, PolicyRefused, PolicyUnavailable
from warmup_base.policy_protocol.wire import AdminRequest, ProtocolError, decode_request


def admin(command: str, **kw) -> AdminRequest:
    selector = {k: kw.pop(k) for k in ("source", "domain", "mailbox", "isp", "tenant", "campaign") if k in kw}
    return AdminRequest(command, {"source": "", "domain": "", "mailbox": "", "isp": "", "tenant": "",
                                  "campaign": "", **selector}, **kw)


async def test_status_pause_resume_and_history_over_the_wire(running: Running) -> None:
    client = PolicyClient(running.address)
    await client.request([request(5)])
    await client.feedback([delivered()])
    assert await client.flush()
    status = await client.admin(admin("status", source="ip1"))
    keys = {(p["kind"], p["name"], p["isp"]) for p in status["pairs"]}
    assert ("ip", "ip1", "google") in keys and all(k[1] == "ip1" for k in keys if k[0] == "ip")
    changed = await client.admin(admin("pause", source="ip1", isp="google", duration="2h", reason="console test"))
    assert changed["changed"] == ["ip|ip1|google"]
    granted_sources = {lease.source for lease in await client.request([request(10)]) if lease.count}
    assert "ip1" not in granted_sources
    history = await client.admin(admin("history", source="ip1", isp="google", limit=10))
    assert [(a["rule"], a["action"], a["reason"]) for a in history["actions"]][-1] == (
        "operator", "pause", "console test")
    explained = await client.admin(admin("explain", source="ip1", isp="google", limit=5))
    assert explained["pairs"] and explained["pairs"][0]["paused"]
    await client.admin(admin("resume", source="ip1", isp="google"))
    assert "ip1" in {lease.source for lease in await client.request([request(10)]) if lease.count}
    await client.close()


async def test_a_misspelt_name_is_refused_with_the_reason(running: Running) -> None:
    client = PolicyClient(running.address)
    with pytest.raises(PolicyUnavailable, match="unknown isp gmial"):
        await client.admin(admin("pause", isp="gmial"))
    with pytest.raises(PolicyUnavailable, match="give --source"):
        await client.admin(admin("pause"))
    assert (await client.admin(admin("pause", isp="gmial", force=True)))["changed"] == ["isp|gmial|*"]
    await client.close()


@pytest.mark.parametrize("line", [
    b'{"v":1,"id":1,"op":"admin","command":"drop_tables"}',
    b'{"v":1,"id":1,"op":"admin","command":"pause","selector":[]}',
    b'{"v":1,"id":1,"op":"admin","command":"pause","selector":{"isp":5}}',
    b'{"v":1,"id":1,"op":"admin","command":"pause","force":"yes"}',
    b'{"v":1,"id":1,"op":"admin","command":"set_day","day":-1}',
])
def test_bad_admin_requests_are_bad_requests(line: bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_request(line)
    assert info.value.code == "bad_request" and info.value.msg_id == 1


async def test_names_with_a_bar_do_not_break_keys(running: Running) -> None:
    """`|` separates the parts of policyd's keys; a mailbox's local part may hold one."""
    from dataclasses import replace

    from warmup_base.policy_protocol.model import Outcome

    client = PolicyClient(running.address)
    ask = replace(request(5), tenant="ten|ant", mailbox="odd|one@example.test", campaign="spring|sale")
    assert sum(lease.count for lease in await client.request([ask])) == 5
    bounce = Outcome("gmail.com", ask.mx_hosts, "ip1", "example.test", "ten|ant", "marketing", "hard_bounce",
                     "userunknown", 550, "5.1.1", 20, "odd|one@example.test", "spring|sale")
    await client.feedback([bounce, delivered()])
    assert await client.flush()
    status = await client.admin(admin("status"))
    assert status["pairs"] and all(p["name"].count("|") == 0 for p in status["pairs"])
    for selector in ({"tenant": "ten|ant"}, {"mailbox": "odd|one@example.test"}, {"campaign": "spring|sale"}):
        explained = await client.admin(admin("explain", **selector))
        assert explained["pairs"] is not None
        await client.admin(admin("history", **selector))
    assert (await client.admin(admin("pause", tenant="ten|ant", force=True)))["changed"] == ["tenant|ten%7Cant|*"]
    await client.close()


async def test_status_says_whether_the_limits_are_shared_by_a_cluster(backend, store) -> None:
    service = PolicyService(Policy(make_settings()), store, Clock(), cache_seconds=0.0)
    status = await operations.status(service, operations.Selector())
    assert status["shared"] is (backend.name == "redis")


async def test_a_refusal_is_told_apart_from_an_outage(running: Running) -> None:
    client = PolicyClient(running.address)
    with pytest.raises(PolicyRefused) as info:
        await client.admin(admin("pause", isp="gmial"))
    assert info.value.code == "bad_request" and "unknown isp gmial" in info.value.detail
    await client.close()
    gone = PolicyClient("127.0.0.1:1")
    with pytest.raises(PolicyUnavailable) as outage:
        await gone.admin(admin("status"))
    assert not isinstance(outage.value, PolicyRefused)
    await gone.close()
