"""Batches (many messages, or one template for many recipients) and templates: substitutions,
HTML escaping, and errors answered per message."""

from __future__ import annotations

from tests.mta.api.conftest import simple


async def test_a_batch_of_messages_is_answered_message_by_message(start_api, world):
    rx = world.domain("example.test")
    api = await start_api()
    batch = {"messages": [simple(to=f"user{i}@example.test", subject=f"n{i}") for i in range(20)]
             + [simple(to="broken")] + [simple(to="last@example.test")]}
    status, body, _h = await api.call("POST", "/v1/messages/batch", json=batch)
    assert status == 200
    results = body["results"]
    assert [r["index"] for r in results] == list(range(22))
    assert body["accepted"] == 21
    assert results[20]["status"] == 422 and results[20]["error"]["field"] == "messages[20].to[0]"
    assert all(r["status"] == 202 and r["id"] for i, r in enumerate(results) if i != 20)
    assert len({r.get("id") for r in results if r["status"] == 202}) == 21
    got = await rx.await_for(21)
    assert sorted(m.rcpt_tos[0] for m in got) == sorted([f"user{i}@example.test" for i in range(20)]
                                                        + ["last@example.test"])


async def test_a_template_batch_renders_each_recipient_and_escapes_html(start_api, world):
    rx = world.domain("example.test")
    api = await start_api()
    batch = {"from": "Shop <shop@sender.example>", "stream": "marketing",
             "template": {"subject": "Hello {{ name }}", "text": "Hi {{ name }}, your code is {{ code }}.",
                          "html": "<p>Hi {{ name }}, code <b>{{ code }}</b></p>"},
             "substitutions": {"code": "SHARED"},
             "recipients": [{"to": "ann@example.test", "substitutions": {"name": "Ann"}},
                            {"to": "bob@example.test", "substitutions": {"name": "<script>x</script>",
                                                                          "code": "B&B"}},
                            {"to": "cat@example.test"}]}
    status, body, _h = await api.call("POST", "/v1/messages/batch", json=batch)
    assert status == 200, body
    ok, missing = body["results"][:2], body["results"][2]
    assert [r["status"] for r in ok] == [202, 202]
    # cat has no name: the template error names the recipient and the field, and nothing is queued for her.
    assert missing["status"] == 422 and missing["error"]["code"] == "template_error"
    assert missing["error"]["field"] == "recipients[2].template.subject" and "name" in missing["error"]["message"]
    got = {m.rcpt_tos[0]: m.data for m in await rx.await_for(2)}
    assert set(got) == {"ann@example.test", "bob@example.test"}
    ann, bob = got["ann@example.test"], got["bob@example.test"]
    assert b"Subject: Hello Ann" in ann and b"your code is SHARED." in ann
    assert b"&lt;script&gt;x&lt;/script&gt;" in bob and b"<b>B&amp;B</b>" in bob     # html part escaped
    assert b"Hi <script>x</script>, your code is B&B." in bob                          # text part as given
    events = [e for e in api.mta.events() if e["event"] == "accepted"]
    assert {e["stream"] for e in events} == {"marketing"} and {e["tenant"] for e in events} == {"tenant-a"}


async def test_a_sandboxed_template_cannot_reach_python_internals(start_api):
    api = await start_api()
    message = {"from": "app@sender.example", "to": "u@example.test",
               "template": {"text": "{{ ''.__class__.__mro__[1].__subclasses__() }}"}}
    status, body, _h = await api.call("POST", "/v1/messages", json=message)
    assert status == 422 and body["error"]["field"] == "template.text"


async def test_batch_limits(start_api):
    api = await start_api()
    status, body, _h = await api.call("POST", "/v1/messages/batch",
                                      json={"messages": [simple()] * 1001})
    assert status == 422 and body["error"]["field"] == "messages"
    status, body, _h = await api.call("POST", "/v1/messages/batch", json={"messages": []})
    assert status == 422
    status, body, _h = await api.call("POST", "/v1/messages/batch", json=[1, 2])
    assert status == 422
