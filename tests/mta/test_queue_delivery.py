"""Queue and delivery behaviour against real receivers and a real DNS server."""

from __future__ import annotations

import asyncio
import email
import time

from mta.model import WAITING
from mta.spool.store import SpoolStore
from tests.mta.conftest import FakeClock, message
from tests.support.receiver import Script


def spool_rows(spool_dir: str, sql: str) -> list[tuple]:
    store = SpoolStore(spool_dir, readonly=True)
    try:
        return store.db.execute(sql).fetchall()
    finally:
        store.close()


async def eventually(read, ok, timeout: float = 10.0):
    """Polls `read()` until `ok(value)`; returns the value (spool writes after an event are async)."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if ok(value) or time.monotonic() > deadline:
            assert ok(value), value
            return value
        await asyncio.sleep(0.05)


async def test_temporary_failure_is_retried_after_backoff(start_mta, world):
    seen: list[float] = []

    def rcpt(address: str, n: int) -> str | None:
        seen.append(time.monotonic())
        return "451 4.3.0 try later" if n <= 2 else None

    rx = world.domain("example.test", script=Script(rcpt=rcpt))
    mta = await start_mta(queue={"retry_base": 1, "retry_factor": 2.0, "retry_max": 10, "retry_jitter": 0.0})
    await mta.send("a@sender.example", ["u@example.test"], message())
    await rx.await_for(1, timeout=20)
    assert len(seen) == 3
    # Backoff respected: 1 s after the first failure, 2 s after the second (base 1, factor 2).
    assert seen[1] - seen[0] >= 0.9
    assert seen[2] - seen[1] >= 1.9
    await mta.wait_event(lambda e: e["event"] == "delivered")   # the receiver has it a moment before we know
    events = [e for e in mta.events() if e["recipient"] == "u@example.test"]
    assert [e["event"] for e in events] == ["accepted", "deferred", "deferred", "delivered"]
    assert events[1]["code"] == 451 and events[1]["status"] == "4.3.0" and events[1]["attempt"] == 1
    assert events[3]["attempt"] == 3


async def test_permanent_failure_sends_dsn_to_sender(start_mta, world):
    world.domain("example.test", script=Script(rcpt=lambda a, n: "550 5.1.1 no such user" if "gone" in a else None))
    sender_mx = world.domain("sender.example")
    mta = await start_mta()
    await mta.send("app@sender.example", ["gone@example.test"], message(to="gone@example.test"))
    dsn = (await sender_mx.await_for(1))[0]
    assert dsn.mail_from == "<>" and dsn.rcpt_tos == ["app@sender.example"]
    parsed = email.message_from_bytes(dsn.data)
    assert parsed.get_content_type() == "multipart/report"
    assert parsed.get_param("report-type") == "delivery-status"
    status = next(p for p in parsed.walk() if p.get_content_type() == "message/delivery-status")
    text = status.as_string()
    assert "Final-Recipient: rfc822; gone@example.test" in text
    assert "Action: failed" in text and "Status: 5.1.1" in text
    assert "Diagnostic-Code: smtp; 550 5.1.1 no such user" in text
    headers_part = next(p for p in parsed.walk() if p.get_content_type() == "text/rfc822-headers")
    assert "Subject: test" in headers_part.get_payload()
    bounced = await mta.wait_event(lambda e: e["event"] == "bounced")
    assert bounced[0]["reason"] == "userunknown" and bounced[0]["code"] == 550
    # The failed recipient is gone from the queue; only nothing is left once the DSN is out.
    await mta.wait_event(lambda e: e["event"] == "delivered" and e["recipient"] == "app@sender.example")
    await eventually(lambda: spool_rows(mta.spool_dir, "SELECT COUNT(*) FROM messages"), lambda r: r == [(0,)])


async def test_no_dsn_for_null_sender(start_mta, world):
    rx = world.domain("example.test", script=Script(rcpt=lambda a, n: "550 5.1.1 no such user"))
    mta = await start_mta()
    await mta.send("", ["gone@example.test"], message())
    await mta.wait_event(lambda e: e["event"] == "bounced")
    await asyncio.sleep(0.3)
    assert not [e for e in mta.events() if e["event"] == "accepted" and e["sender"] == ""
                and e["recipient"] != "gone@example.test"]
    assert rx.count() == 0


async def test_mixed_replies_in_one_transaction(start_mta, world):
    def rcpt(address: str, n: int) -> str | None:
        if address.startswith("hard"):
            return "550 5.1.1 unknown"
        if address.startswith("soft") and n == 1:
            return "452 4.2.2 mailbox full"
        return None

    rx = world.domain("example.test", script=Script(rcpt=rcpt))
    mta = await start_mta()
    await mta.send("", ["ok@example.test", "hard@example.test", "soft@example.test"], message())
    await rx.await_for(2)
    assert rx.messages[0].rcpt_tos == ["ok@example.test"]
    assert rx.messages[1].rcpt_tos == ["soft@example.test"]
    await mta.wait_event(lambda e: e["event"] == "delivered", n=2)
    events = {(e["recipient"], e["event"]) for e in mta.events()}
    assert {("ok@example.test", "delivered"), ("hard@example.test", "bounced"),
            ("soft@example.test", "deferred"), ("soft@example.test", "delivered")} <= events


async def test_null_mx_fails_permanently_without_attempt(start_mta, world, dns_server):
    sender_mx = world.domain("sender.example")
    dns_server.null_mx("nullmx.example")
    mta = await start_mta()
    await mta.send("app@sender.example", ["u@nullmx.example"], message())
    ev = (await mta.wait_event(lambda e: e["event"] == "bounced"))[0]
    assert ev["status"] == "5.1.10" and ev["reason"] == "notaccept" and ev["code"] == 0
    dsn = (await sender_mx.await_for(1))[0]
    assert b"Status: 5.1.10" in dsn.data


async def test_nxdomain_fails_permanently(start_mta, world, dns_server):
    world.domain("sender.example")
    dns_server.soa("example", minimum=60)
    mta = await start_mta()
    await mta.send("app@sender.example", ["u@nosuchdomain.example"], message())
    ev = (await mta.wait_event(lambda e: e["event"] == "bounced"))[0]
    assert ev["status"] == "5.1.2" and ev["reason"] == "hostunknown"


async def test_servfail_defers_then_delivers_when_dns_recovers(start_mta, world, dns_server):
    rx = world.domain("example.test")
    dns_server.servfail("example.test")
    mta = await start_mta()
    await mta.send("a@sender.example", ["u@example.test"], message())
    ev = (await mta.wait_event(lambda e: e["event"] == "deferred"))[0]
    assert ev["status"] == "4.4.3" and ev["code"] == 0
    assert rx.count() == 0
    dns_server.behave_normally("example.test")
    await rx.await_for(1, timeout=20)


async def test_sources_and_ehlo_names_rotate(start_mta, world):
    rx = world.domain("example.test")
    mta = await start_mta(delivery={"messages_per_connection": 2})
    for i in range(12):
        await mta.send("a@sender.example", [f"u{i}@example.test"], message())
    got = await rx.await_for(12)
    pairs = {(m.peer_ip, m.ehlo) for m in got}
    assert pairs == {("127.0.0.11", "mta1.test.example"), ("127.0.0.12", "mta2.test.example")}


async def test_connection_reuse_many_messages_few_connections(start_mta, world):
    rx = world.domain("example.test")
    mta = await start_mta(delivery={"max_connections": 2, "messages_per_connection": 100, "idle_timeout": 3},
                          egress={"pools": {"default": {"sources": ["ip1"]}}})
    n = 60
    await asyncio.gather(*(mta.send("a@sender.example", [f"u{i}@example.test"], message()) for i in range(n)))
    await rx.await_for(n)
    assert rx.connections <= 2, rx.connections
    assert len({m.connection for m in rx.messages}) <= 2


async def test_messages_per_connection_limit_opens_new_connections(start_mta, world):
    rx = world.domain("example.test")
    mta = await start_mta(delivery={"max_connections": 1, "messages_per_connection": 5},
                          egress={"pools": {"default": {"sources": ["ip1"]}}})
    for i in range(15):
        await mta.send("a@sender.example", [f"u{i}@example.test"], message())
    await rx.await_for(15)
    per_conn: dict[int, int] = {}
    for m in rx.messages:
        per_conn[m.connection] = per_conn.get(m.connection, 0) + 1
    assert max(per_conn.values()) <= 5 and len(per_conn) >= 3


async def test_next_mx_after_4xx_greeting(start_mta, world, dns_server):
    busy = world.receiver(script=Script(greeting="421 4.7.0 too busy"))
    good = world.receiver()
    dns_server.mx("example.test", (10, "mx1.example.test"), (20, "mx2.example.test"))
    dns_server.address("mx1.example.test", busy.host)
    dns_server.address("mx2.example.test", good.host)
    mta = await start_mta()
    await mta.send("a@sender.example", ["u@example.test"], message())
    await good.await_for(1)
    assert busy.connections >= 1
    ev = (await mta.wait_event(lambda e: e["event"] == "delivered"))[0]
    assert ev["mx"].startswith("mx2.example.test")


async def test_next_mx_after_connection_refused(start_mta, world, dns_server):
    good = world.receiver()
    dns_server.mx("example.test", (10, "down.example.test"), (20, "up.example.test"))
    dns_server.address("down.example.test", "127.0.1.200")     # nothing listens there
    dns_server.address("up.example.test", good.host)
    mta = await start_mta()
    await mta.send("a@sender.example", ["u@example.test"], message())
    await good.await_for(1)


async def test_starttls_used_when_offered(start_mta, world):
    rx = world.domain("example.test", tls=True)
    mta = await start_mta()
    await mta.send("a@sender.example", ["u@example.test"], message())
    m = (await rx.await_for(1))[0]
    assert m.tls


async def test_domains_sharing_mx_share_a_site(start_mta, world, dns_server):
    rx = world.receiver()
    for d in ("one.example", "two.example"):
        dns_server.mx(d, (10, "mx.shared.example"))
    dns_server.address("mx.shared.example", rx.host)
    mta = await start_mta(egress={"pools": {"default": {"sources": ["ip1"]}}},
                          delivery={"max_connections": 1})
    await mta.send("a@sender.example", ["u@one.example", "v@two.example"], message())
    got = await rx.await_for(1)
    await mta.wait_event(lambda e: e["event"] == "delivered", n=2)
    sites = {e["site"] for e in mta.events() if e["event"] == "delivered"}
    assert sites == {"mx.shared.example"}
    assert sorted(got[0].rcpt_tos) == ["u@one.example", "v@two.example"]    # one transaction
    assert rx.count() == 1 and rx.connections == 1


async def test_unreachable_site_defers_all_and_backs_off(start_mta, world, dns_server):
    dns_server.mx("dead.example", (10, "mx.dead.example"))
    dns_server.address("mx.dead.example", "127.0.1.201")
    mta = await start_mta()
    for i in range(5):
        await mta.send("a@sender.example", [f"u{i}@dead.example"], message())
    evs = await mta.wait_event(lambda e: e["event"] == "deferred", n=5)
    assert all(e["status"].startswith("4.4") for e in evs)
    rows = await eventually(lambda: spool_rows(mta.spool_dir, "SELECT state, next_attempt FROM recipients"),
                            lambda rows: len(rows) == 5 and all(state == 0 for state, _ in rows))
    assert all(na > time.time() for _, na in rows)


async def test_expiry_with_injected_clock_sends_expiry_dsn(start_mta, world):
    world.domain("example.test", script=Script(rcpt=lambda a, n: "451 4.3.0 try later"))
    sender_mx = world.domain("sender.example")
    clock = FakeClock()
    mta = await start_mta(clock=clock, queue={"max_age": "5d", "retry_base": 1, "retry_max": 2})
    await mta.send("app@sender.example", ["slow@example.test"], message())
    await mta.wait_event(lambda e: e["event"] == "deferred")
    clock.advance(6 * 86400)
    ev = (await mta.wait_event(lambda e: e["event"] == "expired", timeout=20))[0]
    assert ev["recipient"] == "slow@example.test"
    dsn = (await sender_mx.await_for(1))[0]
    assert b"Action: failed" in dsn.data and b"Status: 4.4.7" in dsn.data


async def test_delay_warning_dsn_once(start_mta, world):
    world.domain("example.test", script=Script(rcpt=lambda a, n: "451 4.3.0 try later"))
    sender_mx = world.domain("sender.example")
    clock = FakeClock()
    mta = await start_mta(clock=clock, queue={"delay_warning": "4h", "retry_base": 1, "retry_max": 1})
    await mta.send("app@sender.example", ["slow@example.test"], message())
    await mta.wait_event(lambda e: e["event"] == "deferred")
    clock.advance(5 * 3600)
    dsn = (await sender_mx.await_for(1))[0]
    assert b"Action: delayed" in dsn.data and b"Will-Retry-Until:" in dsn.data
    await mta.wait_event(lambda e: e["event"] == "deferred", n=4)
    assert sender_mx.count() == 1        # warned once, not at every retry


async def test_transactional_goes_before_marketing(start_mta, world, dns_server):
    order: list[str] = []

    def data(m) -> None:
        order.append(m.rcpt_tos[0])

    rx = world.domain("example.test", script=Script(data=data))
    dns_server.servfail("example.test")          # park everything on disk first
    # A window of one claims one job at a time, so the claim order is the delivery order.
    mta = await start_mta(queue={"domain_window": 1, "retry_base": 3600},
                          delivery={"max_connections": 1, "messages_per_connection": 1000},
                          egress={"pools": {"default": {"sources": ["ip1"]}}})
    for i in range(4):
        await mta.send("a@sender.example", [f"m{i}@example.test"], message(extra_headers="X-Stream: marketing\r\n"))
    for i in range(2):
        await mta.send("a@sender.example", [f"t{i}@example.test"],
                       message(extra_headers="X-Stream: transactional\r\n"))
    await mta.wait_event(lambda e: e["event"] == "deferred", n=6)
    dns_server.behave_normally("example.test")
    mta.daemon.resolver_forget("example.test")
    await mta.daemon.scheduler.flush()
    await rx.await_for(6)
    assert sorted(order[:2]) == ["t0@example.test", "t1@example.test"], order


async def test_backlog_beyond_window_is_claimed_from_disk(start_mta, world):
    rx = world.domain("example.test")
    mta = await start_mta(queue={"domain_window": 5})
    n = 40
    await asyncio.gather(*(mta.send("a@sender.example", [f"u{i}@example.test"], message()) for i in range(n)))
    await rx.await_for(n)
    assert sorted(rx.recipients()) == sorted(f"u{i}@example.test" for i in range(n))
    await eventually(lambda: spool_rows(mta.spool_dir, "SELECT COUNT(*) FROM recipients"), lambda r: r == [(0,)])


async def test_restart_recovers_queue(start_mta, world, dns_server):
    dns_server.servfail("later.example")
    mta = await start_mta()
    for i in range(3):
        await mta.send("a@sender.example", [f"u{i}@later.example"], message())
    await mta.wait_event(lambda e: e["event"] == "deferred", n=3)
    await mta.daemon.stop()
    rx = world.domain("later.example")
    dns_server.behave_normally("later.example")
    mta2 = await start_mta()
    await rx.await_for(3, timeout=20)
    del mta2


async def test_mail_waiting_for_its_route_at_stop_goes_back_to_the_queue(start_mta, world, dns_server):
    world.domain("slow.example")
    dns_server.delay("slow.example", 3.0)             # the MX lookup is still in flight at the stop
    mta = await start_mta(dns={"timeout": 10})
    await mta.send("a@sender.example", ["u1@slow.example", "u2@slow.example"], message())
    await eventually(lambda: dns_server.count("slow.example", "MX"), lambda n: n >= 1)
    await mta.daemon.stop()
    assert spool_rows(mta.spool_dir, "SELECT state FROM recipients") == [(WAITING,), (WAITING,)]
    assert [e["event"] for e in mta.events()] == ["accepted", "accepted"]


async def test_global_memory_cap_across_many_domains(start_mta, world, dns_server):
    rx = world.receiver()
    domains = [f"d{i}.example" for i in range(8)]
    for d in domains:
        dns_server.mx(d, (10, f"mx.{d}"))
        dns_server.address(f"mx.{d}", rx.host)
    mta = await start_mta(queue={"memory_jobs": 3, "domain_window": 2})
    peak = 0

    async def watch() -> None:
        nonlocal peak
        while True:
            peak = max(peak, mta.daemon.scheduler.total_in_memory)
            await asyncio.sleep(0.001)

    watcher = asyncio.create_task(watch())
    await asyncio.gather(*(mta.send("a@sender.example", [f"u{j}@{d}"], message())
                           for d in domains for j in range(4)))
    await rx.await_for(32)
    watcher.cancel()
    assert peak <= 3
    assert sorted(rx.recipients()) == sorted(f"u{j}@{d}" for d in domains for j in range(4))


async def test_holding_a_message_takes_its_waiting_job_out_of_memory(start_mta, world):
    # One message a minute to the site: the first goes, the others wait in memory (CLAIMED) for
    # their turn. `mta queue hold` of one of them must stop it there, not only on disk, and a
    # release must leave exactly one job for it (claimed afresh from disk).
    from mta.daemon.control import request
    from mta.model import CLAIMED, HELD

    rx = world.domain("example.test")
    mta = await start_mta(delivery={"site": [{"match": "*", "rate_per_minute": 1, "burst": 1}]})
    sched = mta.daemon.scheduler
    queued = []
    for n in range(3):
        reply = await mta.send("a@sender.example", [f"u{n}@example.test"], message(to=f"u{n}@example.test"))
        queued.append(str(reply).split("queued as ")[1].split()[0].strip("'\")"))
    await rx.await_for(1)

    def jobs_of(qid: str) -> int:
        return sum(job.message.queue_id == qid for site in sched.sites.values() for job in site.queued_jobs())

    held = queued[2]
    await eventually(lambda: jobs_of(held), lambda n: n == 1)
    sock = f"{mta.spool_dir}/control.sock"
    answer = await request(sock, {"cmd": "hold", "queue_ids": [held]})
    assert answer == {"ok": True, "held": 1}
    assert jobs_of(held) == 0
    assert spool_rows(mta.spool_dir, f"SELECT r.state FROM recipients r JOIN messages m ON m.id = r.message"
                                     f" WHERE m.queue_id = '{held}'") == [(HELD,)]
    await asyncio.sleep(1.0)
    assert "u2@example.test" not in [r for m in rx.messages for r in m.rcpt_tos]
    answer = await request(sock, {"cmd": "release", "queue_ids": [held]})
    assert answer["ok"]
    await eventually(lambda: jobs_of(held), lambda n: n == 1)
    await asyncio.sleep(1.0)                 # the scan runs again: still one job, never two
    assert jobs_of(held) == 1
    assert spool_rows(mta.spool_dir, f"SELECT r.state FROM recipients r JOIN messages m ON m.id = r.message"
                                     f" WHERE m.queue_id = '{held}'") in ([(CLAIMED,)], [])
