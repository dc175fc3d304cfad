"""`/v1/events` (the tenant's events in order, with a resumable cursor) and `/v1/suppressions`
(the tenant's suppression list; operator keys see and change every tenant's and the global one)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from mta.events import iso_time
from mta.http.api.auth import ApiKey
from mta.http.api.context import CTX
from mta.http.api.errors import ApiError, invalid
from mta.http.api.messages import read_json
from mta.http.api.request import parse_send_at
from mta.spool.suppression import GLOBAL, REASONS, Suppression, listing, normalize, remove
from mta.spool.suppression import add as add_suppression
from mta.submission.addresses import check_recipient

MAX_EVENTS = 1000


def _int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "bad_parameter", f"{name} must be an integer", name) from None
    if not low <= value <= high:
        raise ApiError(400, "bad_parameter", f"{name} must be between {low} and {high}", name)
    return value


async def get_events(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    key = ctx.authenticate(request)
    after = _int_param(request, "after", 0, 0, 2**62)
    limit = _int_param(request, "limit", 100, 1, MAX_EVENTS)
    await ctx.index.barrier()
    rows = await asyncio.get_running_loop().run_in_executor(
        None, ctx.index.after, after, limit, None if key.operator else key.tenant)
    events = [dict(e, cursor=seq) for seq, e in rows]
    return web.json_response({"events": events, "next_cursor": rows[-1][0] if rows else after})


def _tenant_scope(key: ApiKey, requested: str | None) -> str | None:
    """The tenant a request works on: its key's; an operator may name one ("" = global) or all (None)."""
    if not key.operator:
        if requested not in (None, key.tenant):
            raise ApiError(403, "forbidden", "a tenant key works on its own tenant only", "tenant")
        return key.tenant
    return requested


def _entry_json(e: Suppression) -> dict[str, Any]:
    return {"address": e.address, "tenant": e.tenant, "reason": e.reason, "created": iso_time(e.created),
            "expires": iso_time(e.expires) if e.expires else None, "source": e.source, "detail": e.detail}


async def get_suppressions(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    key = ctx.authenticate(request)
    tenant = _tenant_scope(key, request.query.get("tenant"))
    limit = _int_param(request, "limit", 1000, 1, 100_000)
    address = request.query.get("address") or None
    entries = await ctx.spool.read(lambda s: listing(s.db, tenant, None, limit, address))
    return web.json_response({"suppressions": [_entry_json(e) for e in entries]})


async def post_suppression(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    key = ctx.authenticate(request)
    data = await read_json(request)
    if not isinstance(data, dict):
        raise invalid("", "a suppression is a JSON object")
    unknown = set(data) - {"address", "reason", "expires", "tenant", "detail"}
    if unknown:
        raise invalid(sorted(unknown)[0], "unknown field")
    address = data.get("address")
    if not isinstance(address, str) or check_recipient(normalize(address), True) is not None:
        raise invalid("address", "an email address is required")
    reason = data.get("reason", "manual")
    if reason not in REASONS:
        raise invalid("reason", f"one of {', '.join(REASONS)}")
    requested = data.get("tenant")
    if requested is not None and not isinstance(requested, str):
        raise invalid("tenant", "must be a string")
    tenant = _tenant_scope(key, requested)
    tenant = GLOBAL if tenant is None else tenant
    detail = data.get("detail", "")
    if not isinstance(detail, str):
        raise invalid("detail", "must be a string")
    now = ctx.clock()
    expires = 0.0
    if data.get("expires") is not None:
        expires = parse_send_at(data["expires"], now, 10 * 365 * 86400.0, "expires")
        if not expires:
            raise invalid("expires", "must be in the future")
    if reason == "soft_bounce" and not expires:
        raise invalid("expires", "a soft_bounce suppression needs an expiry")
    entry = Suppression(tenant, address, reason, now, expires, f"api:{key.name}", detail)
    await ctx.spool.call(lambda s: add_suppression(s.db, entry))
    ctx.scheduler.suppressed.note(entry.address)
    return web.json_response(_entry_json(Suppression(tenant, normalize(address), reason, now, expires,
                                                     entry.source, detail[:500])), status=201)


async def delete_suppression(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    key = ctx.authenticate(request)
    address = request.query.get("address", "")
    if "@" not in address:
        raise ApiError(400, "bad_parameter", "address= is required", "address")
    tenant = _tenant_scope(key, request.query.get("tenant"))
    removed = await ctx.spool.call(lambda s: remove(s.db, address, GLOBAL if tenant is None else tenant))
    return web.json_response({"address": normalize(address), "removed": removed})
