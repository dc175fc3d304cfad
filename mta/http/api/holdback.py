"""`winner_after` of an A/B batch: a test share of the recipients gets the variants now, the rest
is held back and sent, after a delay, with the variant that did best by a chosen metric.

The held-back recipients are durable: one row per campaign in the spool database (table
`campaign_holdback`, written in the batch's request before its answer), holding the batch's
template, its variants and the recipients not sent yet. At `release_at` the releaser picks the
winner from the event index (human opens or clicks per delivered message, per variant; a tie goes
to the variant named first), writes it into the row, then injects the held messages one by one,
each in the same spool transaction as the row's progress (`next_index`), so a restart goes on
where it stopped and sends nobody twice. The row goes when the last one is queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import hashlib
import json
import logging
import math
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mta.http.api.errors import ApiError, invalid
from warmup_base.configload import ConfigError, parse_duration

if TYPE_CHECKING:
    from mta.http.api.context import ApiContext

log = logging.getLogger("mta.api")

METRICS = ("opened", "clicked")

SCHEMA = """
CREATE TABLE IF NOT EXISTS campaign_holdback (
    tenant TEXT NOT NULL,
    campaign TEXT NOT NULL,
    key_id TEXT NOT NULL,
    key_name TEXT NOT NULL,
    client TEXT NOT NULL,
    release_at REAL NOT NULL,
    metric TEXT NOT NULL,
    request TEXT NOT NULL,          -- {"base": {...}, "variants": [...], "recipients": [{to, substitutions}]}
    next_index INTEGER NOT NULL DEFAULT 0,
    winner TEXT NOT NULL DEFAULT '',
    failed INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, campaign)
);
"""


@dataclass(frozen=True, slots=True)
class WinnerAfter:
    after: float
    metric: str
    test_share: float


@dataclass(slots=True)
class Held:
    """A recipient of the held-back share: its entry as stored, and its message under each variant
    (checked at request time, so a bad recipient is a 422 now, not a failure at release)."""

    entry: dict[str, Any]
    per_variant: list[dict[str, Any]]


@dataclass(slots=True)
class Holdback:
    tenant: str
    campaign: str
    key_id: str
    key_name: str
    client: str
    release_at: float
    metric: str
    request: dict[str, Any]
    next_index: int = 0
    winner: str = ""
    failed: int = 0


def parse_winner_after(value: Any, max_ahead: float) -> WinnerAfter:
    if not isinstance(value, dict) or set(value) - {"after", "metric", "test_share"} or "after" not in value:
        raise invalid("winner_after", 'an object {"after": "4h", "metric": "clicked", "test_share": 0.2}')
    try:
        after = float(parse_duration(value["after"], "winner_after.after"))
    except ConfigError:
        raise invalid("winner_after.after", 'a duration such as "90m" or "4h", or seconds') from None
    if not 60 <= after <= max_ahead:
        raise invalid("winner_after.after", f"from 1 minute to {max_ahead / 86400:g} days")
    metric = value.get("metric", "clicked")
    if metric not in METRICS:
        raise invalid("winner_after.metric", "opened or clicked")
    share = value.get("test_share", 0.2)
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share < 1:
        raise invalid("winner_after.test_share", "a fraction between 0 and 1 (exclusive)")
    return WinnerAfter(after, metric, float(share))


def test_group(campaign: str, addresses: Sequence[str], share: float, variants: int) -> set[int]:
    """Indexes of the recipients who get the test now: `share` of them (at least one per variant),
    chosen by a hash of the campaign and the address, as the variants are."""
    n = len(addresses)
    size = min(n, max(variants, math.ceil(share * n)))
    order = sorted(range(n), key=lambda i: (hashlib.sha256(f"test\x00{campaign}\x00{addresses[i].lower()}"
                                                           .encode()).digest(), i))
    return set(order[:size])


def pick_winner(names: Sequence[str], rows: Sequence[tuple[str, str, bool, int]], metric: str) -> str:
    """The variant with the best rate of human `metric` per delivered message (per sent one while
    nothing is delivered); the first named wins a tie."""
    got: dict[str, dict[str, int]] = {n: {"delivered": 0, "accepted": 0, metric: 0} for n in names}
    for variant, event, machine, count in rows:
        if variant in got and event in got[variant] and not machine:
            got[variant][event] += count

    def rate(name: str) -> float:
        c = got[name]
        return c[metric] / max(c["delivered"] or c["accepted"], 1)

    return max(names, key=lambda n: (rate(n), -names.index(n)))


# ---------------------------------------------------------------------- the table (spool writer / reader)
def ensure_table(db: sqlite3.Connection) -> None:
    db.execute(SCHEMA)          # one statement; executescript would commit the caller's transaction


def save(db: sqlite3.Connection, h: Holdback) -> None:
    db.execute("INSERT OR REPLACE INTO campaign_holdback (tenant, campaign, key_id, key_name, client, release_at,"
               " metric, request) VALUES (?,?,?,?,?,?,?,?)",
               (h.tenant, h.campaign, h.key_id, h.key_name, h.client, h.release_at, h.metric, json.dumps(h.request)))


def _rows(db: sqlite3.Connection, where: str, args: tuple[Any, ...]) -> list[Holdback]:
    if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'campaign_holdback'").fetchone() is None:
        return []
    return [Holdback(t, c, k, kn, cl, r, m, json.loads(req), n, w, f) for t, c, k, kn, cl, r, m, req, n, w, f in
            db.execute("SELECT tenant, campaign, key_id, key_name, client, release_at, metric, request, next_index,"
                       f" winner, failed FROM campaign_holdback WHERE {where}", args)]


def due(db: sqlite3.Connection, now: float) -> list[Holdback]:
    return _rows(db, "release_at <= ? ORDER BY release_at", (now,))


def find(db: sqlite3.Connection, campaign: str, tenant: str | None) -> Holdback | None:
    rows = _rows(db, "campaign = ?" + ("" if tenant is None else " AND tenant = ?"),
                 (campaign,) if tenant is None else (campaign, tenant))
    return rows[0] if rows else None


def set_winner(db: sqlite3.Connection, h: Holdback) -> None:
    db.execute("UPDATE campaign_holdback SET winner = ? WHERE tenant = ? AND campaign = ?",
               (h.winner, h.tenant, h.campaign))


def progress(db: sqlite3.Connection, h: Holdback, next_index: int, failed: int) -> None:
    db.execute("UPDATE campaign_holdback SET next_index = ?, failed = ? WHERE tenant = ? AND campaign = ?",
               (next_index, failed, h.tenant, h.campaign))


def finish(db: sqlite3.Connection, h: Holdback) -> None:
    db.execute("DELETE FROM campaign_holdback WHERE tenant = ? AND campaign = ?", (h.tenant, h.campaign))


def erase_address(db: sqlite3.Connection, address: str) -> int:
    """Erasure: the address's held-back entries go (the progress index moves with them)."""
    removed = 0
    for h in _rows(db, "instr(lower(request), ?) > 0", (address,)):
        entries = h.request["recipients"]
        keep = [e for e in entries if address not in _addresses(e.get("to"))]
        gone_before = sum(1 for i, e in enumerate(entries[:h.next_index]) if e not in keep)
        removed += len(entries) - len(keep)
        h.request["recipients"] = keep
        db.execute("UPDATE campaign_holdback SET request = ?, next_index = ? WHERE tenant = ? AND campaign = ?",
                   (json.dumps(h.request), h.next_index - gone_before, h.tenant, h.campaign))
    return removed


def _addresses(to: Any) -> set[str]:
    """The addresses of a recipient entry's `to` (a string, a mailbox object, or a list of them)."""
    if isinstance(to, list):
        return set().union(*(_addresses(t) for t in to)) if to else set()
    if isinstance(to, dict):
        to = to.get("email", "")
    if not isinstance(to, str):
        return set()
    return {(email.utils.parseaddr(to)[1] or to).strip().lower()}


# ---------------------------------------------------------------------- release
class HoldbackReleaser:
    """Sends held-back shares whose time has come; `release_due` is also what tests call."""

    def __init__(self, ctx: ApiContext, every: float = 15.0) -> None:
        self.ctx = ctx
        self.every = every
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="campaign holdback")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            try:
                await self.release_due()
            except Exception:         # a full disk, a closed spool: the rows stay, next round
                log.exception("releasing held-back campaign shares failed")

    async def release_due(self) -> int:
        """Queues every held-back message that is due; returns how many."""
        ctx = self.ctx
        now = ctx.clock()
        sent = 0
        for h in await ctx.spool.read(lambda s: due(s.db, now)):
            sent += await self._release(h)
        return sent

    async def _release(self, h: Holdback) -> int:
        from mta.http.api.auth import ApiKey
        from mta.http.api.messages import build_message, inject
        from mta.http.api.request import parse_message

        ctx = self.ctx
        variants = h.request["variants"]
        if not h.winner:
            await ctx.index.barrier()
            rows = await asyncio.get_running_loop().run_in_executor(
                None, ctx.index.campaign_counts, h.campaign, h.tenant)
            h.winner = pick_winner([v["name"] for v in variants], rows, h.metric)
            await ctx.spool.call(lambda s: set_winner(s.db, h))
            log.info("campaign %s: variant %s wins by %s; sending the held-back %d", h.campaign, h.winner, h.metric,
                     len(h.request["recipients"]) - h.next_index)
        template = next(v for v in variants if v["name"] == h.winner)["template"]
        base = h.request["base"]
        key = ApiKey(h.key_id, h.key_name, h.tenant, False, 0.0)
        entries = h.request["recipients"]
        sent, failed = 0, h.failed
        for i in range(h.next_index, len(entries)):
            item = {**base, **entries[i], "template": {**base.get("template", {}), **template}}
            item.pop("send_at", None)        # the held share goes now
            try:
                req = parse_message(item, ctx.clock(), ctx.limits)
                msg = build_message(ctx, key, req, h.client, variant=h.winner)
            except ApiError as err:          # checked at request time; a config change may still refuse it
                failed += 1
                log.warning("campaign %s: a held-back message could not be built: %s", h.campaign, err.message)
                await ctx.spool.call(lambda s, n=i + 1, f=failed: progress(s.db, h, n, f))
                continue
            await inject(ctx, msg, h.client, req.tags, also=lambda s, n=i + 1, f=failed: progress(s.db, h, n, f))
            sent += 1
        await ctx.spool.call(lambda s: finish(s.db, h))
        return sent
