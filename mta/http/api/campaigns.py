"""`GET /v1/campaigns/{id}`: a campaign's counts per A/B variant, from the event index.

Counts are recipients (a message and its recipient), not events: a recipient who opened three
times counts once. Opens and clicks by machines (privacy proxies, link scanners) are counted
apart from people's. A tenant key sees its own tenant's messages only; an operator key all."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from mta.events import iso_time
from mta.http.api import holdback as hb
from mta.http.api.context import CTX
from mta.http.api.errors import ApiError

# event name (and machine flag) -> report field; other events (deferred, scheduled...) are not counted
FIELDS = {("accepted", False): "sent", ("delivered", False): "delivered", ("bounced", False): "bounced",
          ("expired", False): "bounced", ("complaint", False): "complained", ("dropped", False): "dropped",
          ("opened", False): "opened", ("opened", True): "opened_machine",
          ("clicked", False): "clicked", ("clicked", True): "clicked_machine"}
ZERO = {name: 0 for name in dict.fromkeys(FIELDS.values())}


def report(campaign: str, rows: list[tuple[str, str, bool, int]]) -> dict[str, Any]:
    """The answer's JSON from the index's (variant, event, machine, recipients) rows."""
    variants: dict[str, dict[str, int]] = {}
    for variant, event, machine, count in rows:
        name = FIELDS.get((event, machine if event in ("opened", "clicked") else False))
        if name is None:
            continue
        counts = variants.setdefault(variant, dict(ZERO))
        counts[name] += count
    total = dict(ZERO)
    for counts in variants.values():
        for k, n in counts.items():
            total[k] += n
    return {"id": campaign, "total": total,
            "variants": [{"name": v, **variants[v]} for v in sorted(variants)]}


async def get_campaign(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    key = ctx.authenticate(request)
    campaign = request.match_info["id"]
    if not campaign or len(campaign) > 100:
        raise ApiError(404, "not_found", "no such campaign", "id")
    await ctx.index.barrier()
    tenant = None if key.operator else key.tenant
    rows = await asyncio.get_running_loop().run_in_executor(None, ctx.index.campaign_counts, campaign, tenant)
    held = await ctx.spool.read(lambda s: hb.find(s.db, campaign, tenant))
    if not rows and held is None:
        raise ApiError(404, "not_found", "no such campaign (unknown, another tenant's, or past retention)", "id")
    answer = report(campaign, rows)
    if held is not None:
        answer["winner_after"] = {"release_at": iso_time(held.release_at), "metric": held.metric,
                                  "winner": held.winner or None,
                                  "held": len(held.request["recipients"]) - held.next_index}
    return web.json_response(answer)
