"""`/v1/messages`: inject (single and batch), status, cancel.

A message from the API takes the same way as one from SMTP submission: MessageBuilder (headers,
stream, tenant, DKIM, List-Unsubscribe), then Injector (the spool write and its fsync) and the
scheduler's events. The tenant is the API key's. The 202 is sent only after the fsync."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web

from mta.events import iso_time
from mta.http.api import holdback as hb
from mta.http.api import idempotency as idem
from mta.http.api import variants as ab
from mta.http.api.auth import ApiKey
from mta.http.api.compose import compose, rendered_plain
from mta.http.api.context import CTX, ApiContext
from mta.http.api.errors import ApiError, invalid
from mta.http.api.eventindex import MessageMeta
from mta.http.api.request import MessageRequest, parse_message, parse_send_at
from mta.http.api.status import recipient_states
from mta.http.api.templates import render
from mta.model import NewMessage
from mta.submission.headers import campaign_name
from mta.submission.pipeline import Outcome, Submission

MAX_BATCH = 1000
MAX_TEMPLATE_RECIPIENTS = 10_000
INJECT_CHUNK = 256          # messages written concurrently: they share the spool's group commits


async def read_json(request: web.Request) -> Any:
    body = await request.read()        # over [api] max_body: 413 (aiohttp's client_max_size)
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "bad_json", f"request body is not JSON: {exc}") from None


def _client(request: web.Request) -> str:
    peer = request.transport.get_extra_info("peername") if request.transport else None
    return peer[0] if isinstance(peer, tuple) else "127.0.0.1"


def build_message(ctx: ApiContext, key: ApiKey, req: MessageRequest, client: str, field: str = "",
                  variant: str = "") -> NewMessage:
    """Template, MIME, then the shared acceptance pipeline's NewMessage (raises ApiError)."""
    rendered = render(req.template, req.substitutions, field + "template") if req.template else rendered_plain(req)
    content = compose(req, rendered)
    if len(content) > ctx.cfg.submission.max_message_size:
        raise ApiError(413, "message_too_large",
                       f"the message is {len(content)} bytes, over the limit of {ctx.cfg.submission.max_message_size}",
                       field.rstrip(".") or "")
    sub = Submission(sender=req.sender.address, recipients=req.recipients, content=content, client_ip=client,
                     helo=f"api:{key.name}", protocol="HTTP", tenant=key.tenant, stream=req.stream,
                     stream_fixed=bool(req.stream), campaign=req.campaign, auth_user=f"api:{key.name}",
                     smtputf8=req.smtputf8, send_at=req.send_at, track=req.track,
                     variant=variant)
    return ctx.builder.build(sub, ctx.clock())


def answer(msg: NewMessage) -> dict[str, Any]:
    return {"id": msg.queue_id, "recipients": list(msg.recipients)}


async def inject(ctx: ApiContext, msg: NewMessage, client: str, tags: list[str],
                 also: Any = None) -> dict[str, Any]:
    """Writes `msg` durably; its answer, or ApiError for a refusal the client should retry."""
    if not ctx.injector.room_for(len(msg.body)):
        ctx.injector.refuse("insufficient_storage")
        raise ApiError(507, "insufficient_storage", "not enough disk space for new mail, try again later",
                       headers={"Retry-After": "60"})
    result = await ctx.injector.inject(msg, "api", client, also=also)
    if result.outcome is Outcome.SHUTTING_DOWN:
        raise ApiError(503, "unavailable", "shutting down, try again later", headers={"Retry-After": "5"})
    if result.outcome is Outcome.NO_SPACE:
        raise ApiError(507, "insufficient_storage", "not enough disk space for new mail, try again later",
                       headers={"Retry-After": "60"})
    if result.outcome is Outcome.FAILED:
        raise ApiError(503, "unavailable", "temporary failure writing the message to disk, try again later",
                       headers={"Retry-After": "5"})
    ctx.metrics.messages.inc()
    ctx.index.note_message(MessageMeta(msg.queue_id, msg.tenant, msg.not_before, tags, ctx.clock()))
    return answer(msg)


class Idempotency:
    """The Idempotency-Key of one request: replay, conflict, or a record to write."""

    def __init__(self, ctx: ApiContext, key: ApiKey, request: web.Request, body: bytes) -> None:
        self.ctx = ctx
        self.scope = key.id
        self.key = request.headers.get("Idempotency-Key", "")
        self.digest = idem.body_hash(request.path, body)
        if len(self.key) > idem.MAX_KEY or any(ord(c) < 0x20 for c in self.key):
            raise ApiError(400, "bad_idempotency_key", f"Idempotency-Key: at most {idem.MAX_KEY} printable characters",
                           "Idempotency-Key")

    async def replay(self) -> web.Response | None:
        if not self.key:
            return None
        ctx = self.ctx
        not_before = ctx.clock() - ctx.cfg.api.idempotency_ttl
        stored = await ctx.spool.read(lambda s: idem.lookup(s.db, self.scope, self.key, not_before))
        if stored is None:
            return None
        if stored.body_hash != self.digest:
            raise ApiError(422, "idempotency_key_reused",
                           "this Idempotency-Key was used for a different request in the last 24 hours",
                           "Idempotency-Key")
        return web.json_response(stored.response, status=stored.status, headers={"Idempotent-Replayed": "true"})

    def writer(self, status: int, response: dict[str, Any], part: str = "") -> Any:
        """The record (of one `part` of a batch), for the message's own spool transaction."""
        if not self.key:
            return None
        now = self.ctx.clock()
        key = idem.part_key(self.key, part) if part else self.key
        return lambda store: idem.record(store.db, self.scope, key, self.digest, status, response, now)

    async def parts(self) -> dict[str, dict[str, Any]]:
        """What a repeat of a batch cut short by a crash already queued: part -> its answer."""
        if not self.key:
            return {}
        ctx = self.ctx
        not_before = ctx.clock() - ctx.cfg.api.idempotency_ttl
        found = await ctx.spool.read(lambda s: idem.parts(s.db, self.scope, self.key, not_before))
        if any(stored.body_hash != self.digest for stored in found.values()):
            raise ApiError(422, "idempotency_key_reused",
                           "this Idempotency-Key was used for a different request in the last 24 hours",
                           "Idempotency-Key")
        return {part: stored.response for part, stored in found.items()}

    def campaign_id(self) -> str:
        """A new A/B campaign's id; the same for every repeat of one keyed request."""
        if not self.key:
            return ab.new_campaign_id()
        return ab.campaign_id_from(f"{self.scope}\0{self.key}")

    def lock(self) -> contextlib.AbstractAsyncContextManager[object]:
        """Requests with the same key wait for each other (the second then replays the first);
        requests without a key never wait."""
        return self._held() if self.key else contextlib.nullcontext()

    @contextlib.asynccontextmanager
    async def _held(self) -> AsyncIterator[None]:
        # Counted, so the entry goes when its last user is done (and never while one waits).
        entry = self.ctx.locks.setdefault((self.scope, self.key), (asyncio.Lock(), [0]))
        entry[1][0] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1][0] -= 1
            if entry[1][0] == 0:
                del self.ctx.locks[(self.scope, self.key)]


IdempotentHandler = Callable[[web.Request, ApiContext, ApiKey, "Idempotency", Any], Awaitable[web.Response]]


def idempotent(handler: IdempotentHandler) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A POST handler that sees its caller, its Idempotency-Key and its JSON body, and runs under
    that key's lock once a stored answer to replay is ruled out."""
    async def handle(request: web.Request) -> web.Response:
        ctx = request.app[CTX]
        key = ctx.authenticate(request)
        ident = Idempotency(ctx, key, request, await request.read())
        async with ident.lock():
            replay = await ident.replay()
            if replay is not None:
                return replay
            return await handler(request, ctx, key, ident, await read_json(request))
    return handle


@idempotent
async def post_message(request: web.Request, ctx: ApiContext, key: ApiKey, ident: Idempotency,
                       data: Any) -> web.Response:
    req = parse_message(data, ctx.clock(), ctx.limits)
    client = _client(request)
    msg = build_message(ctx, key, req, client)
    response = answer(msg)
    await inject(ctx, msg, client, req.tags, also=ident.writer(202, response))
    return web.json_response(response, status=202)


def _batch_requests(data: Any, ctx: ApiContext) -> list[tuple[str, Any]]:
    """(field prefix, message JSON) of each message of a batch, in order; with A/B variants
    (see `variants`), a third item: the recipient's variant name."""
    if not isinstance(data, dict):
        raise invalid("", "a batch is a JSON object with messages, or a template with recipients")
    if "messages" in data:
        items = data["messages"]
        if set(data) != {"messages"}:
            raise invalid("messages", "give messages alone, or a template with recipients")
        if not isinstance(items, list) or not 0 < len(items) <= MAX_BATCH:
            raise invalid("messages", f"a list of 1 to {MAX_BATCH} messages")
        return [(f"messages[{i}].", m) for i, m in enumerate(items)]
    recipients = data.get("recipients")
    if ("template" not in data and "variants" not in data) or not isinstance(recipients, list) or \
            not 0 < len(recipients) <= MAX_TEMPLATE_RECIPIENTS:
        raise invalid("recipients", f"a template batch needs a template and 1 to {MAX_TEMPLATE_RECIPIENTS} recipients")
    if set(data) & ab.BATCH_FIELDS and "variants" not in data:
        raise invalid("split", "split and winner_after go with variants")
    base = {k: v for k, v in data.items() if k != "recipients" and k not in ab.BATCH_FIELDS}
    if any(k in base for k in ("to", "cc", "bcc")):
        raise invalid("to", "a template batch names its recipients in recipients[]")
    common = base.get("substitutions", {})
    out = []
    for i, r in enumerate(recipients):
        where = f"recipients[{i}]"
        if isinstance(r, str):
            r = {"to": r}
        if not isinstance(r, dict) or "to" not in r or set(r) - {"to", "substitutions"}:
            out.append((where + ".", ApiError(422, "invalid", 'a recipient is {"to": ..., "substitutions": {...}}',
                                              where)))
            continue
        subs = r.get("substitutions", {})
        if not isinstance(subs, dict) or not isinstance(common, dict):
            out.append((where + ".", invalid(where + ".substitutions", "must be an object")))
            continue
        out.append((where + ".", {**base, "to": r["to"], "substitutions": {**common, **subs}}))
    if "variants" in data:
        return _with_variants(data, base, out, float(ctx.cfg.api.max_schedule_ahead))
    return out


def _with_variants(data: dict[str, Any], base: dict[str, Any], items: list[tuple[str, Any]],
                   max_ahead: float) -> list[Any]:
    """Each recipient's item with its variant's template fields, and the variant's name."""
    variants = ab.parse_variants(data)
    if not isinstance(base.get("template", {}), dict):
        raise invalid("template", "a template is an object with subject, text and/or html")
    addresses = [item.get("to") if isinstance(item, dict) and isinstance(item.get("to"), str) else ""
                 for _p, item in items]
    campaign = base["campaign"]
    testing = set(range(len(items)))
    if "winner_after" in data:
        rule = hb.parse_winner_after(data["winner_after"], max_ahead)
        testing = hb.test_group(campaign, addresses, rule.test_share, len(variants))
    tested = [i for i in range(len(items)) if i in testing]
    chosen = dict(zip(tested, ab.assign(campaign, [addresses[i] for i in tested], variants), strict=True))
    out: list[Any] = []
    for i, (prefix, item) in enumerate(items):
        if i not in testing:
            if isinstance(item, dict):
                item = hb.Held({"to": item["to"], "substitutions": item.get("substitutions", {})},
                               [{**item, "template": {**base.get("template", {}), **v.template}} for v in variants])
            out.append((prefix, item, ""))
            continue
        variant = variants[chosen[i]]
        if isinstance(item, dict):
            item = {**item, "template": {**base.get("template", {}), **variant.template}}
        out.append((prefix, item, variant.name))
    return out


@idempotent
async def post_batch(request: web.Request, ctx: ApiContext, key: ApiKey, ident: Idempotency,
                     data: Any) -> web.Response:
    campaign = ""
    winner_after: hb.WinnerAfter | None = None
    done = await ident.parts()          # a repeat of a batch a crash cut short
    if isinstance(data, dict) and "variants" in data:
        # An A/B batch is a campaign: its id names the report (GET /v1/campaigns/{id}).
        if data.get("campaign") is None:
            data["campaign"] = ident.campaign_id()
        if not isinstance(data["campaign"], str) or not campaign_name(data["campaign"]):
            raise invalid("campaign", "a campaign id is a non-empty one-line string")
        data["campaign"] = campaign = campaign_name(data["campaign"])
        if "winner_after" in data:
            winner_after = hb.parse_winner_after(data["winner_after"], float(ctx.cfg.api.max_schedule_ahead))
    items = _batch_requests(data, ctx)
    client = _client(request)
    results: list[dict[str, Any]] = [{} for _ in items]
    prepared: list[tuple[int, NewMessage, list[str]]] = []
    variant_of: dict[int, str] = {}
    held: list[tuple[int, dict[str, Any]]] = []
    started = time.monotonic()
    for i, (prefix, item, *variant) in enumerate(items):
        try:
            if isinstance(item, ApiError):
                raise item
            if isinstance(item, hb.Held):
                for one in item.per_variant:        # each variant must render for this recipient
                    req = parse_message(one, ctx.clock(), ctx.limits)
                    if req.template:
                        render(req.template, req.substitutions, "template")
                held.append((i, item.entry))
                continue
            req = parse_message(item, ctx.clock(), ctx.limits, prefix if "messages" in prefix else "")
            prepared.append((i, build_message(ctx, key, req, client, prefix if "messages" in prefix else "",
                                              variant[0] if variant else ""), req.tags))
            if variant:
                variant_of[i] = variant[0]
        except ApiError as err:
            if "recipients[" in prefix and not err.field.startswith(prefix):
                err.field = prefix + err.field      # a template batch: which recipient it was
            results[i] = {"index": i, "status": err.status, **err.body()}
        if time.monotonic() - started > 0.02:
            await asyncio.sleep(0)                 # rendering 10,000 messages must not stall the loop
            started = time.monotonic()
    if held and winner_after is not None:
        # Durable before any of the batch is queued: a refusal here leaves nothing half sent.
        if "held" in done:
            release_at = float(done["held"]["release_at"])
        else:
            release_at = max(ctx.clock(), _send_at(data, ctx)) + winner_after.after
            await _hold(ctx, key, client, data, campaign, winner_after, release_at, [e for _i, e in held],
                        also=ident.writer(202, {"release_at": release_at}, "held"))
        for i, _e in held:
            results[i] = {"index": i, "status": 202, "held_until": iso_time(release_at)}
    to_queue = []
    for i, msg, tags in prepared:
        if str(i) in done:
            results[i] = done[str(i)]
            continue
        results[i] = {"index": i, "status": 202, **answer(msg)}
        if i in variant_of:
            results[i]["variant"] = variant_of[i]
        to_queue.append((i, msg, tags))
    for start in range(0, len(to_queue), INJECT_CHUNK):
        chunk = to_queue[start:start + INJECT_CHUNK]
        outcomes = await asyncio.gather(*(inject(ctx, m, client, tags, also=ident.writer(202, results[i], str(i)))
                                          for i, m, tags in chunk), return_exceptions=True)
        for (i, _m, _t), outcome in zip(chunk, outcomes, strict=True):
            if isinstance(outcome, ApiError):
                results[i] = {"index": i, "status": outcome.status, **outcome.body()}
            elif isinstance(outcome, BaseException):
                raise outcome
    response: dict[str, Any] = {"results": results,
                                "accepted": sum(1 for r in results if r.get("status") == 202 and "id" in r)}
    if campaign:
        response["campaign"] = campaign
    if held:
        response["held"] = len(held)
    write = ident.writer(200, response)
    if write is not None:
        scope, idem_key = ident.scope, ident.key

        def record(store: Any) -> None:
            write(store)
            idem.drop_parts(store.db, scope, idem_key)
        await ctx.spool.call(record)
    return web.json_response(response, status=200)


def _send_at(data: dict[str, Any], ctx: ApiContext) -> float:
    value = data.get("send_at")
    return parse_send_at(value, ctx.clock(), float(ctx.cfg.api.max_schedule_ahead), "send_at") if value else 0.0


async def _hold(ctx: ApiContext, key: ApiKey, client: str, data: dict[str, Any], campaign: str,
                rule: hb.WinnerAfter, release_at: float, entries: list[dict[str, Any]], also: Any = None) -> None:
    """The held-back share, durable before the answer (see holdback)."""
    base = {k: v for k, v in data.items() if k not in ("recipients", "substitutions") and k not in ab.BATCH_FIELDS}
    variants = [{"name": v.name, "template": v.template} for v in ab.parse_variants(data)]
    row = hb.Holdback(key.tenant, campaign, key.id, key.name, client, release_at, rule.metric,
                      {"base": base, "variants": variants, "recipients": entries})
    await ctx.spool.call(lambda s: hb.ensure_table(s.db))
    if await ctx.spool.read(lambda s: hb.find(s.db, campaign, key.tenant)) is not None:
        raise ApiError(409, "campaign_exists", f"campaign {campaign!r} already holds back recipients", "campaign")
    def save(store: Any) -> None:
        hb.save(store.db, row)
        if also is not None:        # the batch's record of its held share, in the same transaction
            also(store)
    await ctx.spool.call(save)


def _queue_id(request: web.Request) -> str:
    qid = request.match_info["id"]
    if not qid.isalnum() or len(qid) > 64:
        raise ApiError(404, "not_found", "no such message", "id")
    return qid.upper()


async def get_message(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    key = ctx.authenticate(request)
    qid = _queue_id(request)
    await ctx.index.barrier()
    meta, rows = await asyncio.get_running_loop().run_in_executor(None, ctx.index.history, qid)
    tenant = meta.tenant if meta else next((t for _s, t, _e in rows if t), "")
    if not rows or (not key.operator and tenant != key.tenant):
        raise ApiError(404, "not_found", "no such message", "id")
    send_at = meta.send_at if meta else 0.0
    states = recipient_states([dict(e, cursor=seq) for seq, _t, e in rows], send_at, ctx.clock())
    return web.json_response({"id": qid, "tenant": tenant, "tags": meta.tags if meta else [],
                              "send_at": iso_time(send_at) if send_at else None,
                              "recipients": list(states.values())})


async def delete_message(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    key = ctx.authenticate(request)
    qid = _queue_id(request)
    result = await ctx.scheduler.cancel(qid, None if key.operator else key.tenant)
    if result is None:
        raise ApiError(404, "not_found", "no such message in the queue (unknown, another tenant's, or done)", "id")
    return web.json_response({"id": result.queue_id, "cancelled": result.cancelled, "in_flight": result.in_flight})

