"""The grant/feedback wire protocol, version 1: JSON Lines over TCP or a Unix stream socket.

Sans-IO: this module turns bytes into typed messages and back; policy.server and the client
(warmup_base.policy_protocol.client) move the bytes. Full description with examples: PROTOCOL.md
next to this file.

Framing: one UTF-8 JSON object per line, terminated by "\\n"; at most `max_message` bytes a line
(4 MiB by default). Every message carries `"v": 1` and an `id` (an integer or string chosen by the
client) that the reply repeats, so a client may have several requests in flight on one connection.
The server answers each request with exactly one line, in the order received.

Requests (`op`):
- ``hello``: ``{"v":1,"id":1,"op":"hello","client":"mta/0.1"}`` ->
  ``{"v":1,"id":1,"ok":true,"server":"policyd","versions":[1]}``
- ``ping``: -> ``{"v":1,"id":2,"ok":true,"time":<server clock>}``
- ``grant``: ``"requests": [{"site","mx_hosts":[..],"pool","sources":[..],"stream","sending_domain",
  "tenant","wanted", "mailbox"?, "campaign"?, "backlog"?, "weights"?}, ...]`` ->
  ``"grants": [[lease, ...], ...]``, one list per request in the same order; a lease is
  ``{"source","count","max_connections","messages_per_connection","ttl","retry_in","overflow"?}``.
  `ttl` and `retry_in` are seconds from now (relative, so the two hosts' clocks need not agree).
  A list holds one lease per source granted, or one lease with count 0 whose `retry_in` says when
  asking again makes sense. `wanted` 0 gives an empty list.
- ``feedback``: ``"outcomes": [{"site","mx_hosts","source","sending_domain","tenant","stream",
  "outcome","reason","code","status","count", "mailbox"?, "campaign"?}, ...]`` -> ``"counted": n``.
  Outcomes should be aggregated by the sender (same fields, summed counts).

Errors: ``{"v":1,"id":<id or null>,"ok":false,"error":{"code":..., "message":...}}`` with code
`bad_json`, `bad_request` (the message names the field, e.g. "requests[2].wanted"),
`unsupported_version`, `unknown_op`, `too_large` (the connection is closed after it, since the
line's end was not seen), `unavailable` (the state backend failed) or `internal` (a bug: no input
may cause it). Hostile input is one of the first four: JSON nested deeper than the parser's stack
is `bad_json`; a string holding an unpaired surrogate escape (``"\\ud800"``, which UTF-8 cannot
carry) or an integer over its field's bound (`MAX_COUNT`, `MAX_CODE`) is `bad_request`. An error
reply is ASCII-only JSON, so it can always be encoded whatever the request held.

Compatibility: fields may be added to any object; receivers ignore fields they do not know.
A change that old peers could misread gets a new version number.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from warmup_base.policy_protocol.model import Grant, GrantRequest, Outcome

VERSION = 1
SUPPORTED = (VERSION,)
OPS = ("hello", "ping", "grant", "feedback", "admin")
ADMIN_COMMANDS = ("status", "history", "explain", "pause", "resume", "set_day")
SELECTOR_FIELDS = ("source", "domain", "mailbox", "isp", "tenant", "campaign")
MAX_ITEMS = 10000            # requests or outcomes in one message
MAX_COUNT = 10**9            # `wanted` and `count`: far above any real batch, far below float/SQLite limits
MAX_CODE = 999               # `code`: an SMTP reply code (0: none)


class ProtocolError(ValueError):
    """A message that cannot be served; `code` is the error code sent back."""

    def __init__(self, code: str, message: str, msg_id: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.msg_id = msg_id


@dataclass(frozen=True, slots=True)
class Request:
    msg_id: Any
    op: str
    asks: tuple[GrantRequest, ...] = ()
    outcomes: tuple[Outcome, ...] = ()
    client: str = ""
    admin: AdminRequest | None = None


@dataclass(frozen=True, slots=True)
class AdminRequest:
    """An operator's request (the MTA's console): what `policyd status|history|explain|pause|resume|
    set-day` do, with the same selectors."""

    command: str
    selector: dict[str, str]
    duration: str = ""          # pause: e.g. "2h"; "" = until resumed
    day: int = 0                # set_day
    reason: str = ""
    force: bool = False         # act on a name policyd has never seen
    limit: int = 100            # history: actions; explain: actions per pair


@dataclass(frozen=True, slots=True)
class Reply:
    msg_id: Any
    ok: bool
    body: dict[str, Any]
    error_code: str = ""
    error_message: str = ""


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


# ---- field readers: each names the offending field in its error
def _utf8(value: str) -> bool:
    """False for a string JSON can hold but UTF-8 cannot: an unpaired surrogate from a \\udXXX escape."""
    if value.isascii():
        return True
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _brief(value: Any) -> str:
    """A client's value quoted in an error message: short, ASCII, and never a deep structure's repr."""
    if isinstance(value, list | dict):
        return f"<{type(value).__name__}>"
    text = ascii(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _str(obj: dict[str, Any], name: str, where: str, default: str | None = None) -> str:
    value = obj.get(name, default)
    if not isinstance(value, str):
        raise ProtocolError("bad_request", f"{where}.{name}: expected a string")
    if not _utf8(value):
        raise ProtocolError("bad_request", f"{where}.{name}: not UTF-8 (an unpaired surrogate)")
    return value


def _int(obj: dict[str, Any], name: str, where: str, default: int | None = None, most: int = MAX_COUNT) -> int:
    value = obj.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ProtocolError("bad_request", f"{where}.{name}: expected a non-negative integer")
    if value > most:
        raise ProtocolError("bad_request", f"{where}.{name}: at most {most}")
    return value


def _ints(obj: dict[str, Any], name: str, where: str) -> tuple[int, ...]:
    value = obj.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_COUNT
                                              for v in value):
        raise ProtocolError("bad_request", f"{where}.{name}: expected a list of integers from 0 to {MAX_COUNT}")
    return tuple(value)


def _strs(obj: dict[str, Any], name: str, where: str) -> tuple[str, ...]:
    value = obj.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ProtocolError("bad_request", f"{where}.{name}: expected a list of strings")
    if not all(_utf8(v) for v in value):
        raise ProtocolError("bad_request", f"{where}.{name}: not UTF-8 (an unpaired surrogate)")
    return tuple(value)


def _items(body: dict[str, Any], name: str) -> list[dict[str, Any]]:
    items = body.get(name)
    if not isinstance(items, list):
        raise ProtocolError("bad_request", f"{name}: expected a list")
    if len(items) > MAX_ITEMS:
        raise ProtocolError("bad_request", f"{name}: at most {MAX_ITEMS} items in one message")
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise ProtocolError("bad_request", f"{name}[{i}]: expected an object")
    return items


def key_safe(name: str) -> str:
    """A name as policyd keys it: `|` separates the parts of its keys ("kind|name|isp"), and a
    mailbox's local part (or a tenant's or campaign's name) may hold one, so it becomes %7C."""
    return name.replace("|", "%7C") if "|" in name else name


def _name(d: dict[str, Any], name: str, where: str, default: str | None = None) -> str:
    return key_safe(_str(d, name, where, default))


def _ask(d: dict[str, Any], where: str) -> GrantRequest:
    return GrantRequest(site=_str(d, "site", where), mx_hosts=_strs(d, "mx_hosts", where),
                        pool=_str(d, "pool", where, ""), sources=tuple(map(key_safe, _strs(d, "sources", where))),
                        stream=_str(d, "stream", where, ""), sending_domain=_name(d, "sending_domain", where, ""),
                        tenant=_name(d, "tenant", where, ""), wanted=_int(d, "wanted", where),
                        mailbox=_name(d, "mailbox", where, ""), campaign=_name(d, "campaign", where, ""),
                        backlog=_int(d, "backlog", where, 0), weights=_ints(d, "weights", where))


def _outcome(d: dict[str, Any], where: str) -> Outcome:
    return Outcome(site=_str(d, "site", where, ""), mx_hosts=_strs(d, "mx_hosts", where),
                   source=_name(d, "source", where), sending_domain=_name(d, "sending_domain", where, ""),
                   tenant=_name(d, "tenant", where, ""), stream=_str(d, "stream", where, ""),
                   outcome=_str(d, "outcome", where), reason=_str(d, "reason", where, ""),
                   code=_int(d, "code", where, 0, MAX_CODE), status=_str(d, "status", where, ""),
                   count=_int(d, "count", where, 1), mailbox=_name(d, "mailbox", where, ""),
                   campaign=_name(d, "campaign", where, ""))


# ---- server side
def decode_request(line: bytes) -> Request:
    """Parses one request line; raises ProtocolError (with the id, when it could be read)."""
    try:
        body = json.loads(line)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError("bad_json", f"not a JSON object: {exc}") from None
    except RecursionError:
        raise ProtocolError("bad_json", "not a JSON object: nested too deeply") from None
    if not isinstance(body, dict):
        raise ProtocolError("bad_json", "not a JSON object")
    msg_id = body.get("id")
    if isinstance(msg_id, str) and not _utf8(msg_id):
        raise ProtocolError("bad_request", "id: not UTF-8 (an unpaired surrogate)")
    try:
        if body.get("v") not in SUPPORTED:
            raise ProtocolError("unsupported_version", f"v: protocol version {_brief(body.get('v'))} not supported"
                                                       f" (supported: {list(SUPPORTED)})")
        if not isinstance(msg_id, int | str) or isinstance(msg_id, bool):
            raise ProtocolError("bad_request", "id: expected an integer or a string")
        op = body.get("op")
        if op not in OPS:
            raise ProtocolError("unknown_op", f"op: unknown operation {_brief(op)} (known: {', '.join(OPS)})")
        if op == "grant":
            asks = tuple(_ask(d, f"requests[{i}]") for i, d in enumerate(_items(body, "requests")))
            return Request(msg_id, op, asks=asks)
        if op == "feedback":
            outs = tuple(_outcome(d, f"outcomes[{i}]") for i, d in enumerate(_items(body, "outcomes")))
            return Request(msg_id, op, outcomes=outs)
        if op == "admin":
            return Request(msg_id, op, admin=_admin(body))
        return Request(msg_id, op, client=_str(body, "client", op, ""))
    except ProtocolError as exc:
        exc.msg_id = msg_id if isinstance(msg_id, int | str) and not isinstance(msg_id, bool) else None
        raise


def _admin(body: dict[str, Any]) -> AdminRequest:
    command = _str(body, "command", "admin")
    if command not in ADMIN_COMMANDS:
        raise ProtocolError("bad_request", f"command: unknown {_brief(command)} (known: {', '.join(ADMIN_COMMANDS)})")
    raw = body.get("selector", {})
    if not isinstance(raw, dict):
        raise ProtocolError("bad_request", "selector: expected an object")
    selector = {name: _str(raw, name, "selector", "") for name in SELECTOR_FIELDS}
    force = body.get("force", False)
    if not isinstance(force, bool):
        raise ProtocolError("bad_request", "force: expected true or false")
    return AdminRequest(command, selector, duration=_str(body, "duration", "admin", ""),
                        day=_int(body, "day", "admin", 0, most=100_000), reason=_str(body, "reason", "admin", ""),
                        force=force, limit=_int(body, "limit", "admin", 100, most=100_000))


def admin_message(msg_id: Any, admin: AdminRequest) -> bytes:
    return encode({"v": VERSION, "id": msg_id, "op": "admin", "command": admin.command, "selector": admin.selector,
                   "duration": admin.duration, "day": admin.day, "reason": admin.reason, "force": admin.force,
                   "limit": admin.limit})


def _lease(g: Grant) -> dict[str, Any]:
    lease = {"source": g.source, "count": g.count, "max_connections": g.max_connections,
             "messages_per_connection": g.messages_per_connection, "ttl": g.ttl, "retry_in": round(g.retry_in, 3)}
    if g.why:
        lease["why"] = g.why
    if g.overflow:
        lease["overflow"] = True
    return lease


def ok_reply(msg_id: Any, **body: Any) -> bytes:
    return encode({"v": VERSION, "id": msg_id, "ok": True, **body})


def grant_reply(msg_id: Any, grants: Sequence[Sequence[Grant]]) -> bytes:
    return ok_reply(msg_id, grants=[[_lease(g) for g in per_ask] for per_ask in grants])


def error_reply(msg_id: Any, code: str, message: str) -> bytes:
    """ASCII-only (\\u escapes), so it encodes whatever a hostile request put in the id or the message."""
    return json.dumps({"v": VERSION, "id": msg_id, "ok": False, "error": {"code": code, "message": message}},
                      separators=(",", ":")).encode() + b"\n"


# ---- client side
def hello_message(msg_id: Any, client: str) -> bytes:
    return encode({"v": VERSION, "id": msg_id, "op": "hello", "client": client})


def grant_message(msg_id: Any, asks: Sequence[GrantRequest]) -> bytes:
    requests = []
    for a in asks:
        d = {"site": a.site, "mx_hosts": list(a.mx_hosts), "pool": a.pool, "sources": list(a.sources),
             "stream": a.stream, "sending_domain": a.sending_domain, "tenant": a.tenant, "wanted": a.wanted}
        if a.mailbox:
            d["mailbox"] = a.mailbox
        if a.campaign:
            d["campaign"] = a.campaign
        if a.backlog:
            d["backlog"] = a.backlog
        if a.weights:
            d["weights"] = list(a.weights)
        requests.append(d)
    return encode({"v": VERSION, "id": msg_id, "op": "grant", "requests": requests})


def feedback_message(msg_id: Any, outcomes: Sequence[Outcome]) -> bytes:
    items = []
    for o in outcomes:
        d = {"site": o.site, "mx_hosts": list(o.mx_hosts), "source": o.source, "sending_domain": o.sending_domain,
             "tenant": o.tenant, "stream": o.stream, "outcome": o.outcome, "reason": o.reason, "code": o.code,
             "status": o.status, "count": o.count}
        if o.mailbox:
            d["mailbox"] = o.mailbox
        if o.campaign:
            d["campaign"] = o.campaign
        items.append(d)
    return encode({"v": VERSION, "id": msg_id, "op": "feedback", "outcomes": items})


def decode_reply(line: bytes) -> Reply:
    try:
        body = json.loads(line)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError("bad_json", f"reply is not JSON: {exc}") from None
    if not isinstance(body, dict) or body.get("v") not in SUPPORTED:
        raise ProtocolError("unsupported_version", "reply of an unknown protocol version")
    if body.get("ok") is True:
        return Reply(body.get("id"), True, body)
    error = body.get("error") if isinstance(body.get("error"), dict) else {}
    return Reply(body.get("id"), False, body, str(error.get("code", "")), str(error.get("message", "")))


def decode_grants(reply: Reply, expected: int) -> list[list[Grant]]:
    """The per-request lease lists of a grant reply; ProtocolError if the shape is wrong."""
    grants = reply.body.get("grants")
    if not isinstance(grants, list) or len(grants) != expected:
        raise ProtocolError("bad_request", f"grants: expected {expected} lists")
    out = []
    for i, per_ask in enumerate(grants):
        if not isinstance(per_ask, list):
            raise ProtocolError("bad_request", f"grants[{i}]: expected a list")
        leases = []
        for j, d in enumerate(per_ask):
            where = f"grants[{i}][{j}]"
            if not isinstance(d, dict):
                raise ProtocolError("bad_request", f"{where}: expected an object")
            ttl, retry = d.get("ttl", 0), d.get("retry_in", 0)
            if not isinstance(ttl, int | float) or not isinstance(retry, int | float):
                raise ProtocolError("bad_request", f"{where}: ttl and retry_in must be numbers")
            leases.append(Grant(_str(d, "source", where), _int(d, "count", where),
                                _int(d, "max_connections", where, 1), _int(d, "messages_per_connection", where, 1),
                                float(ttl), float(retry), _str(d, "why", where, ""),
                                overflow=d.get("overflow") is True))
        out.append(leases)
    return out
