"""PolicyClient, the MTA's Limiter, against a real policyd server and against no server at all."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Coroutine
from dataclasses import replace
from typing import Any

from tests.policy.conftest import Clock, Running, free_port, start_server
from tests.policy.test_engine import GOOGLE
from warmup_base.policy_protocol.client import PolicyClient
from warmup_base.policy_protocol.model import GrantRequest, Limiter, Outcome


def request(wanted: int, stream: str = "marketing", site: str = "gmail.com") -> GrantRequest:
    return GrantRequest(site, GOOGLE, "default", ("ip1", "ip2"), stream, "example.test", "t1", wanted)


def delivered(source: str = "ip1", count: int = 1) -> Outcome:
    return Outcome("gmail.com", GOOGLE, source, "example.test", "t1", "marketing", "delivered", "", 250, "2.0.0",
                   count)


async def until_available(client: PolicyClient, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not client.available:
        assert time.monotonic() < deadline, "the client did not reconnect"
        await asyncio.sleep(0.02)


async def test_leases_come_back_as_mta_leases_on_the_clients_clock(running: Running) -> None:
    mta_clock = Clock(start=500.0)                   # the MTA's clock need not be policyd's
    client = PolicyClient(running.address, clock=mta_clock)
    limiter: Limiter = client
    leases = await limiter.request([request(5)])
    assert sum(lease.count for lease in leases) == 5
    assert all(lease.valid_until == 530.0 and lease.site == "gmail.com" for lease in leases)
    assert all(lease.stream == "marketing" and lease.sending_domain == "example.test" for lease in leases)
    await client.request([request(100)])             # empty the buckets
    [refused] = await client.request([request(1)])
    assert refused.count == 0 and 500.0 < refused.retry_after <= 500.0 + 360
    await client.close()


async def test_feedback_is_aggregated_before_it_is_sent(running: Running) -> None:
    seen: list[int] = []
    real = running.service.feedback

    async def spy(items: list) -> int:
        seen.append(len(items))
        return await real(items)

    running.service.feedback = spy                   # type: ignore[method-assign]
    client = PolicyClient(running.address)
    await client.feedback([delivered() for _ in range(300)] + [delivered("ip2", 5)])
    assert await client.flush()
    assert sum(seen) == 2                            # two distinct keys, summed counts
    rows = {str(r.key): r for r in await running.service.status()}
    assert rows["ip|ip1|google"].health["delivered"] == 300
    assert rows["ip|ip2|google"].health["delivered"] == 5
    await client.close()


async def test_aggregated_feedback_keeps_the_mailbox_and_the_campaign(running: Running) -> None:
    seen: list = []
    real = running.service.feedback

    async def spy(items: list) -> int:
        seen.extend(items)
        return await real(items)

    running.service.feedback = spy                   # type: ignore[method-assign]
    client = PolicyClient(running.address)
    base = delivered()
    await client.feedback([replace(base, mailbox="a@example.test", campaign="spring")] * 3
                          + [replace(base, mailbox="a@example.test", campaign="autumn")])
    assert await client.flush()
    assert sorted((o.mailbox, o.campaign, o.count) for o in seen) == [("a@example.test", "autumn", 1),
                                                                     ("a@example.test", "spring", 3)]
    await client.close()


def ends_without_waiting(coro: Coroutine[Any, Any, Any]) -> bool:
    """Whether `coro` runs to its end without once giving way to the event loop: nothing it does
    waits on a peer (a precise "returns at once", whatever the machine's load)."""
    try:
        coro.send(None)
    except StopIteration:
        return True
    coro.close()
    return False


async def test_unreachable_policyd_grants_nothing_but_the_transactional_floor() -> None:
    clock = Clock(start=1000.0)
    # Timeouts far beyond the wait below: a refused connection must be taken as an answer, not waited out.
    client = PolicyClient(f"127.0.0.1:{free_port()}", transactional_floor=60, clock=clock,
                          connect_timeout=120, request_timeout=120)
    marketing, transactional = await asyncio.wait_for(
        client.request([request(50), request(50, "transactional", "b.example")]), 60)
    assert marketing.count == 0 and marketing.retry_after == 1001.0
    assert transactional.count == 10                 # 60 a minute, a burst of ten seconds' worth
    [again] = await client.request([request(50, "transactional", "b.example")])
    assert again.count == 0                          # the floor is a rate, not a free pass
    clock.advance(5)
    [later] = await client.request([request(50, "transactional", "b.example")])
    assert later.count == 5
    assert not client.available
    await client.close()


async def test_a_hung_policyd_does_not_hold_the_caller() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()                          # accepts, reads, never answers

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = PolicyClient(f"127.0.0.1:{port}", request_timeout=0.3, connect_timeout=0.3)
    [lease] = await asyncio.wait_for(client.request([request(5)]), 60)    # gives up after its own timeouts
    assert lease.count == 0
    assert ends_without_waiting(client.feedback([delivered()]))     # returns at once, whatever the daemon does
    await client.close(flush_timeout=0.5)
    server.close()


async def test_the_client_reconnects_and_delivers_feedback_kept_while_policyd_was_away(clock: Clock) -> None:
    port = free_port()
    client = PolicyClient(f"127.0.0.1:{port}", retry_interval=0.1)
    [lease] = await client.request([request(3)])
    assert lease.count == 0
    await client.feedback([delivered(count=4)])
    assert not await client.flush()                  # kept, not lost

    r, tmpdir = await start_server("tcp", clock)
    await r.server.stop(0)                           # free the ephemeral port; listen on the chosen one
    from policy.server import PolicyServer
    server = PolicyServer(r.service)
    await server.start([f"127.0.0.1:{port}"])
    try:
        await until_available(client)                # found again without being asked
        leases = await client.request([request(3)])
        assert sum(lease.count for lease in leases) == 3 and client.available
        assert await client.flush()
        rows = {str(k.key): k for k in await r.service.status()}
        assert rows["ip|ip1|google"].health["delivered"] == 4
    finally:
        await client.close()
        await server.stop(1.0)
        shutil.rmtree(tmpdir, ignore_errors=True)


async def test_a_restarted_policyd_is_found_again(clock: Clock) -> None:
    r, tmpdir = await start_server("tcp", clock)
    client = PolicyClient(r.address, retry_interval=0.05)
    assert sum(lease.count for lease in await client.request([request(2)])) == 2
    await r.server.stop(1.0)                         # the connection goes away
    [lease] = await client.request([request(2)])
    assert lease.count == 0
    from policy.server import PolicyServer
    server = PolicyServer(r.service)
    await server.start([r.address])
    try:
        await until_available(client)
        assert sum(lease.count for lease in await client.request([request(2)])) == 2
    finally:
        await client.close()
        await server.stop(1.0)
        shutil.rmtree(tmpdir, ignore_errors=True)


async def test_feedback_buffer_is_bounded_while_policyd_is_away() -> None:
    client = PolicyClient(f"127.0.0.1:{free_port()}", max_pending_feedback=3)
    await client.feedback([delivered(f"ip{i}") for i in range(5)])
    await client.flush()
    assert client.dropped_feedback == 2
    await client.close(flush_timeout=0.1)


async def test_the_mta_config_describes_the_client(tmp_path: object) -> None:
    from mta.config import Config, PolicySection
    from mta.daemon.serve import make_limiter
    cfg = Config(policy=PolicySection(address="unix:/run/warmup-mta/policyd.sock", transactional_floor=30))
    mta_clock = Clock(start=7.0)
    client = make_limiter(cfg, mta_clock)
    assert isinstance(client, PolicyClient)
    assert (client.address, client.transactional_floor, client.clock) == (cfg.policy.address, 30.0, mta_clock)
    [lease] = await client.request([request(3, "transactional")])    # nothing listens there
    assert lease.count == 3 and lease.valid_until == 7.0 + client.floor_lease_seconds
    await client.close()
