"""`POST /v1/erasure` {"address": ...}: erases an address everywhere the MTA keeps it (see
mta.erasure.service); operator keys only. The answer counts what was removed, per store."""

from __future__ import annotations

from aiohttp import web

from mta.http.api.context import CTX
from mta.http.api.errors import ApiError, invalid
from mta.http.api.messages import read_json
from mta.submission.addresses import check_recipient


async def post_erasure(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    key = ctx.authenticate(request)
    if not key.operator:
        raise ApiError(403, "forbidden", "erasure needs an operator key")
    data = await read_json(request)
    if not isinstance(data, dict) or set(data) != {"address"}:
        raise invalid("address", 'the body is {"address": ...}')
    address = data["address"]
    if not isinstance(address, str) or "\x00" in address or check_recipient(address.strip(), True) is not None:
        raise invalid("address", "not an address")
    if ctx.erase is None:
        raise ApiError(503, "unavailable", "erasure is not available here", headers={"Retry-After": "5"})
    report = await ctx.erase(address.strip())
    return web.json_response(report.to_json())
