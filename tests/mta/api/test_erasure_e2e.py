"""Erasure (GDPR) end to end: an address with delivered, tracked and clicked mail, queued mail, a
delivery log row, an API idempotency answer, a suppression and rotated event logs is erased
through the running daemon (POST /v1/erasure) or, with no daemon, by `mta erase`; afterwards its
bytes are nowhere under the spool directory, other recipients' data stays, and the address stays
suppressed (hashed)."""

from __future__ import annotations

import gzip
import json
import os
from datetime import UTC, datetime

import aiohttp

from tests.mta.api.test_tracking_e2e import BROWSER, html_of, links, tracking
from tests.mta.proc import run_cli
from tests.support.receiver import free_port

ANN = "Ann.Erased@example.test"
BOB = "bob@example.test"
OTHER_LINE = {"event": "delivered", "queue_id": "OLD1", "recipient": BOB}


def files_naming(root: str, needle: str) -> list[str]:
    """Regular files under `root` whose bytes contain `needle` (any case), gzip files unpacked."""
    found = []
    for directory, _dirs, names in os.walk(root):
        for name in names:
            path = os.path.join(directory, name)
            if not os.path.isfile(path):
                continue                    # the control socket
            with open(path, "rb") as f:
                data = f.read()
            if name.endswith(".gz"):
                data += gzip.decompress(data)
            if needle.lower().encode() in data.lower():
                found.append(path)
    return found


def rotated_logs(spool_dir: str) -> None:
    """An older, rotated event log (plain and gzip) that names ANN and BOB."""
    lines = [json.dumps({"event": "delivered", "queue_id": "OLD0", "recipient": ANN.lower()}),
             json.dumps(OTHER_LINE), json.dumps({"event": "bounced", "queue_id": "OLD2", "recipient": "x@y.test",
                                                 "text": f"550 <{ANN}> unknown"})]
    data = ("\n".join(lines) + "\n").encode()
    with open(os.path.join(spool_dir, "events.jsonl.1"), "wb") as f:
        f.write(data)
    with gzip.open(os.path.join(spool_dir, "events.jsonl.2.gz"), "wb") as f:
        f.write(data)


def later(clock, seconds: float) -> str:
    return datetime.fromtimestamp(clock() + seconds, UTC).isoformat()


async def put_address_everywhere(api, port: int) -> str:
    """Delivered + clicked (engagement, delivery log, events), scheduled (queued), an idempotent
    request (its stored answer names the address), a suppression. Returns the queued message id."""
    base = f"http://127.0.0.1:{port}"
    html = '<p>Hi</p><a href="https://shop.example/sale">Sale</a>'
    # A long body whose footer names the address: the footer sits on an overflow page, which
    # delivery frees to SQLite's free list with its bytes still there (the erasure scrubs it).
    footer = "<p>" + "Our offers. " * 2000 + f"</p><p>This mail was sent to {ANN}.</p>"
    await api.send({"from": "news@sender.example", "to": ANN, "subject": "Sale", "html": html + footer,
                    "stream": "marketing"})
    await api.send({"from": "news@sender.example", "to": BOB, "subject": "Sale", "html": html,
                    "stream": "marketing"})
    await api.mta.wait_event(lambda e: e["event"] == "delivered", n=2)
    return base


async def test_erasure_through_the_api_leaves_no_trace_and_keeps_the_suppression(start_api, world) -> None:
    rx = world.domain("example.test")
    port = free_port(["127.0.0.1"])
    api = await start_api(**tracking(port))
    base = await put_address_everywhere(api, port)
    got = {m.rcpt_tos[0]: m for m in await rx.await_for(2)}
    api.mta.clock.advance(3600)
    async with aiohttp.ClientSession(headers={"User-Agent": BROWSER}) as http:
        for rcpt in (ANN, BOB):
            async with http.get(links(html_of(got[rcpt].data), base)[0][0], allow_redirects=False) as r:
                assert r.status == 302
    await api.mta.wait_event(lambda e: e["event"] == "clicked", n=2)
    queued = await api.send({"from": "news@sender.example", "to": ANN, "subject": "Later", "text": "later",
                             "send_at": later(api.mta.clock, 86400)}, headers={"Idempotency-Key": "k1"})
    kept = await api.send({"from": "news@sender.example", "to": BOB, "subject": "Later", "text": "later",
                           "send_at": later(api.mta.clock, 86400)})
    status, _b, _h = await api.call("POST", "/v1/suppressions", "op",
                                    json={"address": ANN, "reason": "complaint", "tenant": "tenant-a"})
    assert status == 201
    await api.mta.daemon.engagement.recorder.flush()
    rotated_logs(api.mta.spool_dir)
    api.mta.daemon.events.flush()
    assert files_naming(api.mta.spool_dir, ANN)           # the test's premise: it is there to find

    assert (await api.call("POST", "/v1/erasure", "a", json={"address": ANN}))[0] == 403   # tenant key
    status, report, _h = await api.call("POST", "/v1/erasure", "op", json={"address": ANN})
    assert status == 200, report
    removed = report["removed"]
    assert removed["queued_recipients"] == 1 and removed["queued_messages"] == 1
    assert removed["deliveries"] == 1 and removed["engagement"] == 1 and removed["idempotency_records"] == 1
    assert removed["event_index"] >= 4 and removed["event_log_lines"] >= 4 + 4
    assert report["suppressions_hashed"] == 1 and report["wal_kept"] == []

    api.mta.daemon.events.flush()
    assert files_naming(api.mta.spool_dir, ANN) == []
    # Everything of the other recipient stays.
    assert (await api.call("GET", f"/v1/messages/{kept['id']}"))[0] == 200
    assert (await api.call("GET", f"/v1/messages/{queued['id']}"))[0] == 404
    assert api.mta.daemon.engagement.store.get(BOB, api.mta.clock()) is not None
    assert any(e["recipient"] == BOB and e["event"] == "clicked" for e in api.mta.events())
    with gzip.open(os.path.join(api.mta.spool_dir, "events.jsonl.2.gz"), "rt") as f:
        assert [json.loads(line) for line in f] == [OTHER_LINE]
    # Still suppressed, by its hash: a new message to it is dropped, not sent.
    again = await api.send({"from": "news@sender.example", "to": ANN.upper(), "subject": "x", "text": "x"})
    [dropped] = await api.mta.wait_event(lambda e: e["event"] == "dropped" and e["queue_id"] == again["id"])
    assert dropped["reason"] == "complaint"
    status, listing, _h = await api.call("GET", "/v1/suppressions", "op")
    assert ANN.lower() not in json.dumps(listing).lower()
    assert any(s["address"].startswith("sha256:") for s in listing["suppressions"])


async def test_mta_erase_without_a_daemon_edits_the_files(start_api, world) -> None:
    rx = world.domain("example.test")
    port = free_port(["127.0.0.1"])
    api = await start_api(**tracking(port))
    await put_address_everywhere(api, port)
    await rx.await_for(2)
    await api.send({"from": "news@sender.example", "to": ANN, "subject": "Later", "text": "later",
                    "send_at": later(api.mta.clock, 86400)})
    rotated_logs(api.mta.spool_dir)
    await api.mta.daemon.stop()
    assert not os.path.exists(os.path.join(api.mta.spool_dir, "control.sock"))
    run = run_cli("erase", ANN, "--config", api.mta.config_path, "--json")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["removed"]["queued_recipients"] == 1 and report["removed"]["deliveries"] == 1
    assert report["removed"]["engagement"] == 1 and report["removed"]["event_log_lines"] >= 4
    assert files_naming(api.mta.spool_dir, ANN) == []
    text = run_cli("erase", ANN, "--config", api.mta.config_path)
    assert text.returncode == 0 and "queued recipients" in text.stdout and "0" in text.stdout
