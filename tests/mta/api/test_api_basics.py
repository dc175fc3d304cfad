"""The API's answers to bad requests (401, 400, 413, 422), idempotency, and tenant isolation."""

from __future__ import annotations

import asyncio
import base64

from tests.mta.api.conftest import simple


def accepted_ids(api) -> list[str]:
    return sorted({e["queue_id"] for e in api.mta.events() if e["event"] == "accepted"})


async def test_missing_wrong_and_revoked_keys_are_401(start_api):
    api = await start_api()
    status, body, headers = await api.call("POST", "/v1/messages", who=None, json=simple())
    assert status == 401 and body["error"]["code"] == "unauthorized" and "Bearer" in headers["WWW-Authenticate"]
    status, body, _h = await api.call("GET", "/v1/events", who=None, headers={"Authorization": "Bearer mta_nope"})
    assert status == 401 and set(body["error"]) == {"code", "message", "field"}
    from mta.http.api.auth import KeyStore

    store = KeyStore(api.mta.spool_dir)
    assert store.revoke("key-b") == 1        # another process's revocation (the CLI's) takes effect at once
    store.close()
    status, _b, _h = await api.call("GET", "/v1/events", who="b")
    assert status == 401
    assert accepted_ids(api) == []


async def test_bad_json_is_400_and_a_big_body_is_413(start_api):
    api = await start_api(api={"max_body": "64K"})
    status, body, _h = await api.call("POST", "/v1/messages", data=b"{not json",
                                      headers={"Content-Type": "application/json"})
    assert status == 400 and body["error"]["code"] == "bad_json"
    big = simple(text="x" * 100_000)
    status, body, _h = await api.call("POST", "/v1/messages", json=big)
    assert status == 413 and body["error"]["code"] == "too_large"
    status, body, _h = await api.call("GET", "/v1/nothing-here")
    assert status == 404 and body["error"]["code"] == "not_found"
    assert accepted_ids(api) == []


async def test_invalid_fields_are_422_naming_the_field(start_api):
    api = await start_api()
    cases = [
        (simple(to="not-an-address"), "to[0]"),
        (simple(to=["ok@example.test", "bad@@example.test"]), "to[1]"),
        ({**simple(), "from": "x"}, "from"),
        (simple(stream="nonesuch"), "stream"),
        (simple(send_at="2020-13-01T00:00:00Z"), "send_at"),
        (simple(send_at="2999-01-01T00:00:00Z"), "send_at"),
        (simple(headers={"Bcc": "x@y.example"}), "headers.Bcc"),
        (simple(attachments=[{"filename": "a.bin", "content": "!!!"}]), "attachments[0].content"),
        (simple(unknown=1), "unknown"),
        ({"from": "app@sender.example", "to": "u@example.test",
          "template": {"html": "<p>{{ name }</p>"}}, "template.html"),
        ({"from": "app@sender.example", "to": "u@example.test",
          "template": {"subject": "Hi {{ firstname }}", "text": "x"}, "substitutions": {"name": "Bo"}},
         "template.subject"),
    ]
    for message, field in cases:
        status, body, _h = await api.call("POST", "/v1/messages", json=message)
        assert status == 422, (message, body)
        assert body["error"]["field"] == field, (message, body)
    assert accepted_ids(api) == []


async def test_a_repeat_with_the_same_idempotency_key_returns_the_first_answer_and_queues_nothing(start_api, world):
    world.domain("example.test")
    api = await start_api()
    headers = {"Idempotency-Key": "order-42"}
    first = await api.call("POST", "/v1/messages", json=simple(), headers=headers)
    second = await api.call("POST", "/v1/messages", json=simple(), headers=headers)
    assert first[0] == second[0] == 202
    assert first[1] == second[1]
    assert second[2].get("Idempotent-Replayed") == "true"
    # Concurrent repeats too: one message in all.
    results = await asyncio.gather(*(api.call("POST", "/v1/messages", json=simple(), headers=headers)
                                     for _ in range(5)))
    assert {r[1]["id"] for r in results} == {first[1]["id"]}
    assert api.mta.daemon.api.ctx.locks == {}       # no lock left behind per key
    assert accepted_ids(api) == [first[1]["id"]]
    # The same key with another body is refused; another key (another app) may use the same name.
    status, body, _h = await api.call("POST", "/v1/messages", json=simple(subject="Other"), headers=headers)
    assert status == 422 and body["error"]["code"] == "idempotency_key_reused"
    status, body, _h = await api.call("POST", "/v1/messages", who="b", json=simple(), headers=headers)
    assert status == 202 and body["id"] != first[1]["id"]


async def test_delivered_message_has_its_history_and_tenant_b_cannot_see_it(start_api, world):
    rx = world.domain("example.test")
    api = await start_api()
    attachment = base64.b64encode(b"%PDF-1.4 fake").decode()
    sent = await api.send({"from": "App <app@sender.example>", "to": ["one@example.test"],
                           "cc": "two@example.test", "bcc": ["hidden@example.test"], "reply_to": "help@sender.example",
                           "subject": "Receipt", "text": "Thanks.", "html": "<p>Thanks.</p>",
                           "headers": {"X-Order": "42"}, "tags": ["receipt"], "campaign": "spring",
                           "attachments": [{"filename": "r.pdf", "content_type": "application/pdf",
                                            "content": attachment}]})
    assert sent["recipients"] == ["one@example.test", "two@example.test", "hidden@example.test"]
    got = (await rx.await_for(1))[0]
    assert sorted(got.rcpt_tos) == sorted(sent["recipients"])
    assert got.mail_from.endswith("@bounces.test.example")     # VERP return path, as for SMTP mail
    head = got.data.split(b"\r\n\r\n", 1)[0]
    assert b"Received: from api:key-a" in head and b"with HTTP id " + sent["id"].encode() in head
    assert b"Message-ID: <" in head and b"Date: " in head and b"X-Order: 42" in head
    assert b"hidden@" not in got.data                           # bcc is envelope only
    assert b"r.pdf" in got.data and b"multipart/alternative" in got.data
    status = await api.wait_state(sent["id"], "one@example.test", "delivered")
    one = next(r for r in status["recipients"] if r["address"] == "one@example.test")
    assert [e["event"] for e in one["events"]] == ["accepted", "delivered"]
    assert one["events"][0]["tenant"] == "tenant-a" and one["events"][0]["campaign"] == "spring"
    assert status["tags"] == ["receipt"] and status["tenant"] == "tenant-a"
    # Another tenant's key finds nothing; the operator's finds it.
    assert (await api.call("GET", f"/v1/messages/{sent['id']}", who="b"))[0] == 404
    assert (await api.call("GET", f"/v1/messages/{sent['id']}", who="op"))[0] == 200
    assert (await api.call("DELETE", f"/v1/messages/{sent['id']}", who="b"))[0] == 404
    _s, events_b, _h = await api.call("GET", "/v1/events", who="b")
    assert events_b["events"] == []


async def test_no_disk_space_is_507_with_retry_after(start_api):
    api = await start_api(mta={"min_free_space": "99%", "spool_ballast": 0})
    status, body, headers = await api.call("POST", "/v1/messages", json=simple())
    assert status == 507 and body["error"]["code"] == "insufficient_storage" and headers["Retry-After"]
    assert accepted_ids(api) == []
