"""Who may use the console: nobody without a key, operators only, sessions that expire and end,
and CSRF tokens on every POST made with the session cookie. Against the running daemon."""

from __future__ import annotations

import aiohttp

from mta.http.api.auth import KeyStore
from tests.mta.conftest import FakeClock

API_VIEWS = ["api/session", "api/warmup", "api/decisions", "api/queue", "api/deliverability", "api/suppressions?q=a@b"]


async def test_without_a_key_the_page_loads_but_no_data_does(start_api):
    api = await start_api()
    async with aiohttp.ClientSession() as http:
        async with http.get(api.base + "/console/") as resp:
            page = await resp.text()
            assert resp.status == 200 and resp.content_type == "text/html"
            assert 'id="login"' in page and "<script" in page and "<script>" not in page    # no inline script
            csp = resp.headers["Content-Security-Policy"]
            assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "'unsafe-inline'" not in csp
            assert resp.headers["X-Frame-Options"] == "DENY" and resp.headers["Referrer-Policy"] == "no-referrer"
        for asset, ctype in (("console.js", "text/javascript"), ("console.css", "text/css")):
            async with http.get(api.base + "/console/" + asset) as resp:
                assert resp.status == 200 and resp.content_type == ctype and len(await resp.read()) > 500
        async with http.get(api.base + "/console", allow_redirects=False) as resp:
            assert resp.status == 301 and resp.headers["Location"] == "/console/"
        for path in API_VIEWS:
            async with http.get(api.base + "/console/" + path) as resp:
                body = await resp.json()
                assert resp.status == 401 and body["error"]["code"] == "unauthorized", path
                assert resp.headers["Cache-Control"] == "no-store"
                assert resp.headers["X-Frame-Options"] == "DENY"     # error answers too
        async with http.post(api.base + "/console/api/action", json={"action": "flush"}) as resp:
            assert resp.status == 401
    assert not [e for e in api.mta.events() if e["event"] == "operator_action"]


async def test_bearer_keys_operators_in_tenants_out(start_api):
    api = await start_api()
    for who, status in (("op", 200), ("a", 403)):
        code, body, headers = await api.call("GET", "/console/api/queue", who)
        assert code == status, body
        assert headers["Cache-Control"] == "no-store"
    code, body, _h = await api.call("GET", "/console/api/session", "op")
    assert body == {"operator": "key-op", "csrf": "", "cookie": False}
    code, body, _h = await api.call("GET", "/console/api/warmup", None, headers={"Authorization": "Bearer mta_nope"})
    assert code == 401
    # A Bearer request needs no CSRF token: it carries no ambient credential a page could borrow.
    code, body, _h = await api.call("POST", "/console/api/action", "op", json={"action": "flush"})
    assert code == 200 and body["ok"], body
    code, body, _h = await api.call("POST", "/console/api/action", "a", json={"action": "flush"})
    assert code == 403


async def test_log_in_sets_a_strict_http_only_cookie_and_log_out_ends_it(start_api, browser):
    api = await start_api()
    b = browser(api)
    resp = await b.login("mta_wrong")
    assert resp.status == 303 and resp.headers["Location"] == "/console/?login=failed"
    assert "Set-Cookie" not in resp.headers
    resp = await b.login(api.keys["a"])                    # a tenant key
    assert resp.status == 303 and resp.headers["Location"] == "/console/?login=not-operator"
    assert "Set-Cookie" not in resp.headers
    assert (await b.get("api/session"))[0] == 401
    resp = await b.login(api.keys["op"])
    assert resp.status == 303 and resp.headers["Location"] == "/console/"
    cookie = resp.headers["Set-Cookie"]
    for attribute in ("HttpOnly", "SameSite=Strict", "Path=/console", "Max-Age=43200"):
        assert attribute in cookie, cookie
    assert api.keys["op"] not in cookie                    # the cookie holds a session id, never the key
    me = await b.session()
    assert me["operator"] == "key-op" and len(me["csrf"]) >= 32 and me["cookie"]
    for path in API_VIEWS:
        assert (await b.get(path))[0] == 200, path
    # Log-out needs the token too (a page elsewhere must not log the operator out).
    async with b.http.post(b.base + "logout", data={"csrf": "wrong"}, allow_redirects=False) as r:
        assert r.status == 403
    async with b.http.post(b.base + "logout", data={"csrf": b.csrf}, allow_redirects=False) as r:
        assert r.status == 303 and r.headers["Location"] == "/console/"
    assert (await b.get("api/session"))[0] == 401


async def test_posts_with_the_cookie_need_the_sessions_csrf_token(start_api, browser):
    api = await start_api()
    b = browser(api)
    await b.login(api.keys["op"])
    await b.session()
    other = browser(api)
    await other.login(api.keys["op"])
    await other.session()
    for token in ("", "not-the-token", other.csrf):        # missing, wrong, another session's
        status, body = await b.act({"action": "flush"}, csrf=token)
        assert status == 403 and "CSRF" in body["error"]["message"], token
    status, body = await b.act({"action": "flush"}, headers={"Origin": "http://evil.example"})
    assert status == 403 and "cross-origin" in body["error"]["message"]
    assert not [e for e in api.mta.events() if e["event"] == "operator_action"]
    status, body = await b.act({"action": "flush"})
    assert status == 200 and body["ok"]
    [audit] = [e for e in api.mta.events() if e["event"] == "operator_action"]
    assert audit["reason"] == "flush" and audit["text"].startswith("operator key-op: flush")


async def test_sessions_expire_and_end_with_their_key(start_api, browser):
    clock = FakeClock()
    api = await start_api(clock=clock, api={"console_session": "1h"})
    b = browser(api)
    resp = await b.login(api.keys["op"])
    assert "Max-Age=3600" in resp.headers["Set-Cookie"]
    assert (await b.get("api/queue"))[0] == 200
    clock.advance(3500)
    assert (await b.get("api/queue"))[0] == 200
    clock.advance(200)                                     # past the hour (the browser would drop it too)
    status, body, _h = await b.get("api/queue")
    assert status == 401 and body["error"]["code"] == "unauthorized"
    # A revoked key ends its sessions at once.
    await b.login(api.keys["op"])
    assert (await b.get("api/queue"))[0] == 200
    keys = KeyStore(api.mta.spool_dir)
    try:
        assert keys.revoke("key-op") == 1
    finally:
        keys.close()
    assert (await b.get("api/queue"))[0] == 401
