"""/v1/events (in order, resumable, per tenant) and /v1/suppressions (per tenant; global for
operators), through the running daemon."""

from __future__ import annotations

from tests.mta.api.conftest import simple


async def test_events_are_in_order_and_resumable_from_the_cursor(start_api, world):
    world.domain("example.test")
    api = await start_api()
    ids = [(await api.send(simple(to=f"u{i}@example.test")))["id"] for i in range(6)]
    await api.send(simple(), who="b")
    for i, qid in enumerate(ids):
        await api.wait_state(qid, f"u{i}@example.test", "delivered")
    seen, cursor = [], 0
    while True:
        status, page, _h = await api.call("GET", f"/v1/events?after={cursor}&limit=4")
        assert status == 200
        if not page["events"]:
            assert page["next_cursor"] == cursor
            break
        assert len(page["events"]) <= 4
        seen += page["events"]
        cursor = page["next_cursor"]
    cursors = [e["cursor"] for e in seen]
    assert cursors == sorted(cursors) and len(set(cursors)) == len(cursors)
    assert {e["tenant"] for e in seen} == {"tenant-a"}
    assert sorted((e["queue_id"], e["event"]) for e in seen) == sorted(
        [(q, "accepted") for q in ids] + [(q, "delivered") for q in ids])
    for qid in ids:      # each message's accepted comes before its delivered
        names = [e["event"] for e in seen if e["queue_id"] == qid]
        assert names == ["accepted", "delivered"]
    # The operator sees both tenants.
    _s, everything, _h = await api.call("GET", "/v1/events?limit=1000", who="op")
    assert {e["tenant"] for e in everything["events"]} == {"tenant-a", "tenant-b"}
    # Bad parameters are 400s naming the parameter.
    status, body, _h = await api.call("GET", "/v1/events?limit=0")
    assert status == 400 and body["error"]["field"] == "limit"
    status, body, _h = await api.call("GET", "/v1/events?after=x")
    assert status == 400 and body["error"]["field"] == "after"


async def test_a_suppressed_recipient_is_not_sent_and_shows_as_suppressed(start_api, world):
    rx = world.domain("example.test")
    api = await start_api()
    status, entry, _h = await api.call("POST", "/v1/suppressions", json={"address": "Gone@Example.test"})
    assert status == 201 and entry["address"] == "gone@example.test" and entry["tenant"] == "tenant-a"
    assert entry["reason"] == "manual"
    sent = await api.send(simple(to=["gone@example.test", "here@example.test"]))
    await api.wait_state(sent["id"], "gone@example.test", "suppressed")
    await api.wait_state(sent["id"], "here@example.test", "delivered")
    assert [m.rcpt_tos for m in rx.messages] == [["here@example.test"]]
    # Tenant b's mail to the same address is not held back: the entry is tenant a's.
    other = await api.send(simple(to="gone@example.test"), who="b")
    await api.wait_state(other["id"], "gone@example.test", "delivered", who="b")


async def test_suppression_lists_are_per_tenant_and_operators_manage_global_ones(start_api):
    api = await start_api()
    assert (await api.call("POST", "/v1/suppressions", json={"address": "a@x.example"}))[0] == 201
    assert (await api.call("POST", "/v1/suppressions", who="b",
                           json={"address": "b@x.example", "reason": "complaint"}))[0] == 201
    status, body, _h = await api.call("POST", "/v1/suppressions", who="b",
                                      json={"address": "c@x.example", "tenant": "tenant-a"})
    assert status == 403                           # a tenant key cannot write another tenant's list
    status, body, _h = await api.call("POST", "/v1/suppressions", who="op",
                                      json={"address": "all@x.example", "tenant": ""})
    assert status == 201 and body["tenant"] == ""
    _s, a_list, _h = await api.call("GET", "/v1/suppressions")
    assert [e["address"] for e in a_list["suppressions"]] == ["a@x.example"]
    _s, everything, _h = await api.call("GET", "/v1/suppressions", who="op")
    assert sorted(e["address"] for e in everything["suppressions"]) == ["a@x.example", "all@x.example",
                                                                       "b@x.example"]
    status, body, _h = await api.call("POST", "/v1/suppressions", json={"address": "nope"})
    assert status == 422 and body["error"]["field"] == "address"
    status, body, _h = await api.call("POST", "/v1/suppressions", json={"address": "z@x.example",
                                                                       "reason": "soft_bounce"})
    assert status == 422 and body["error"]["field"] == "expires"
    _s, found, _h = await api.call("GET", "/v1/suppressions?address=B@X.example", who="op")
    assert [(e["address"], e["tenant"], e["reason"]) for e in found["suppressions"]] == [
        ("b@x.example", "tenant-b", "complaint")]
    # b cannot remove a's entry; a can.
    _s, body, _h = await api.call("DELETE", "/v1/suppressions?address=a@x.example", who="b")
    assert body["removed"] == 0
    _s, body, _h = await api.call("DELETE", "/v1/suppressions?address=a@x.example")
    assert body["removed"] == 1
    _s, a_list, _h = await api.call("GET", "/v1/suppressions")
    assert a_list["suppressions"] == []
