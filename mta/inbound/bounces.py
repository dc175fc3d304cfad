"""Turns what the inbound listener received (DSNs, non-standard bounces, ARF complaints) into
suppression entries, events and feedback to the policy daemon.

Reports wait in `<spool>/inbound/new/` (written durably by the listener). Each is parsed with
bounce_parser off the event loop, attributed to the original delivery (by the VERP address it
was sent to, else by the original Message-ID, else by the most recent delivery to the
recipient), applied, and moved to `cur/`. What yields nothing is moved to `quarantine/` for a
human, and counted; nothing here ever stops the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from bounce_parser import parse_bytes
from bounce_parser.model import KIND_ARF, BounceRecord, ParseResult
from mta.config import Config
from mta.events import Event, EventLog
from mta.inbound.verp import decode as verp_decode
from mta.metrics import Metrics
from mta.spool import Spool, SpoolStore
from mta.spool.suppression import GLOBAL, Suppression, SuppressionFilter
from mta.spool.suppression import add as add_suppression
from warmup_base.policy_protocol.model import Outcome, feedback_class

log = logging.getLogger("mta.bounces")

_ENVELOPE_TO = re.compile(rb"^X-Warmup-Envelope-To: (.*)\r?$", re.MULTILINE)
KEEP_PROCESSED_SECONDS = 7 * 86400


@dataclass(frozen=True, slots=True)
class Delivery:
    queue_id: str
    recipient: str
    time: float
    source: str
    site: str
    mx_hosts: tuple[str, ...]
    sending_domain: str
    tenant: str
    stream: str
    sender: str = ""
    campaign: str = ""
    variant: str = ""


def find_delivery(store: SpoolStore, queue_id: str, recipient: str, message_id: str) -> Delivery | None:
    """The delivery a report is about: by queue id (VERP), else Message-ID, else recipient."""
    cols = ("queue_id, recipient, time, source, site, mx_hosts, sending_domain, tenant, stream, sender, campaign,"
            " variant")
    row = None
    if queue_id:
        row = store.db.execute(f"SELECT {cols} FROM deliveries WHERE queue_id = ? AND (? = '' OR recipient = ?)"
                               " ORDER BY time DESC LIMIT 1", (queue_id, recipient, recipient)).fetchone()
    if row is None and message_id:
        row = store.db.execute(f"SELECT {cols} FROM deliveries WHERE header_message_id = ?"
                               " AND (? = '' OR recipient = ?) ORDER BY time DESC LIMIT 1",
                               (message_id, recipient, recipient)).fetchone()
    if row is None and recipient:
        row = store.db.execute(f"SELECT {cols} FROM deliveries WHERE recipient = ? ORDER BY time DESC LIMIT 1",
                               (recipient,)).fetchone()
    if row is None:
        return None
    return Delivery(row[0], row[1], row[2], row[3], row[4], tuple(h for h in row[5].split(",") if h), row[6],
                    row[7], row[8], row[9], row[10], row[11])


class BounceProcessor:
    def __init__(self, cfg: Config, spool: Spool, events: EventLog, metrics: Metrics, verp_key: bytes,
                 feedback: Callable[[Outcome], None], suppressed: SuppressionFilter,
                 clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.spool = spool
        self.events = events
        self.metrics = metrics
        self.verp_key = verp_key
        self.feedback = feedback
        self.suppressed = suppressed
        self.clock = clock
        self.bounce_domains = cfg.bounce_domains()
        self.dir = os.path.join(cfg.mta.spool_dir, "inbound")
        for sub in ("new", "cur", "quarantine"):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        self._wake = asyncio.Event()
        self.processed = 0
        self.quarantined = 0

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        last_prune = 0.0
        while True:
            self._wake.clear()
            await self.process_pending()
            if time.monotonic() - last_prune > 3600:
                last_prune = time.monotonic()
                await asyncio.get_running_loop().run_in_executor(None, self._prune_processed)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 5.0)

    async def process_pending(self) -> int:
        new_dir = os.path.join(self.dir, "new")
        names = sorted(os.listdir(new_dir))
        for name in names:
            try:
                await self.process_file(os.path.join(new_dir, name))
            except Exception:
                log.exception("processing inbound report %s failed; quarantined", name)
                self._move(name, "quarantine")
        return len(names)

    async def process_file(self, path: str) -> ParseResult:
        loop = asyncio.get_running_loop()
        with open(path, "rb") as f:
            raw = f.read()
        result: ParseResult = await loop.run_in_executor(None, parse_bytes, raw)
        envelope_rcpts = _envelope_recipients(raw)
        verp = next((v for v in (verp_decode(self.verp_key, a, self.bounce_domains) for a in envelope_rcpts) if v),
                    None)
        applied = 0
        for record in result.records:
            if await self._apply(record, verp.queue_id if verp else "", verp.recipient if verp else ""):
                applied += 1
        name = os.path.basename(path)
        if result.records:
            self._move(name, "cur")
            self.processed += 1
        else:
            self._move(name, "quarantine")
            self.quarantined += 1
            self.metrics.refusals.labels("inbound_unparseable").inc()
            log.warning("inbound report %s: nothing recognised, kept in quarantine/", name)
        self.metrics.inbound_reports.labels(result.kind if result.records else "unparsed").inc()
        return result

    async def _apply(self, record: BounceRecord, verp_qid: str, verp_rcpt: str) -> bool:
        """Applies one recipient's news; False when it needs no action (delays, deliveries...)."""
        complaint = record.kind == KIND_ARF
        failed = record.action in ("failed", "") and not complaint and record.reply_kind not in (
            "delivered", "autoreply")
        if not complaint and not failed:
            return False
        recipient = (verp_rcpt or record.recipient).lower()
        if not recipient:
            return False
        now = self.clock()
        delivery = await self.spool.read(
            lambda s: find_delivery(s, verp_qid, recipient, record.message_id))
        tenant = delivery.tenant if delivery else ""
        cfg = self.cfg.suppression
        entry: Suppression | None = None
        if complaint:
            scope = tenant if cfg.complaint_scope == "tenant" else GLOBAL
            entry = Suppression(scope, recipient, "complaint", now, 0.0, "arf", record.feedback_type)
        elif record.hard:
            entry = Suppression(GLOBAL, recipient, "hard_bounce", now, 0.0, "dsn",
                                f"{record.status} {record.diagnostic}"[:500])
        elif record.reason in cfg.soft_reasons:
            entry = Suppression(GLOBAL, recipient, "soft_bounce", now, now + cfg.soft_bounce_ttl, "dsn",
                                f"{record.status} {record.diagnostic}"[:500])
        if entry is not None:
            suppression = entry
            await self.spool.call(lambda s: add_suppression(s.db, suppression))
            self.suppressed.note(recipient)
        if complaint:
            log.info("complaint (%s) about %s%s", record.feedback_type or "abuse", recipient,
                     f", suppressed for tenant {entry.tenant or 'all'}" if entry else "")
        else:
            log.info("bounce for %s: %s (%s %s)%s", recipient, record.reason or "unknown", record.status or "-",
                     "hard" if record.hard else "soft", f", suppressed as {entry.reason}" if entry else "")
        auth = " ".join(f"{a.method}={a.result}" for a in record.authentication_results)
        text = record.diagnostic if not complaint else f"feedback-type={record.feedback_type} {auth}".strip()
        self.events.emit(Event("complaint" if complaint else "bounced", delivery.queue_id if delivery else verp_qid,
                               recipient, "", now, 0.0, delivery.site if delivery else "", "",
                               delivery.source if delivery else "", "", record.reply_code or 0, record.status,
                               text, record.reason, 0, delivery.stream if delivery else "", tenant,
                               delivery.sending_domain if delivery else "", record.message_id,
                               campaign=delivery.campaign if delivery else "",
                               variant=delivery.variant if delivery else ""))
        if delivery is not None:
            kind = record.reply_kind or ("hard" if record.hard else "soft")
            outcome = "complaint" if complaint else feedback_class(kind)
            self.feedback(Outcome(delivery.site, delivery.mx_hosts, delivery.source, delivery.sending_domain,
                                  delivery.tenant, delivery.stream, outcome, record.reason, record.reply_code or 0,
                                  record.status,
                                  mailbox=delivery.sender, campaign=delivery.campaign))
        return True

    def _move(self, name: str, to: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.rename(os.path.join(self.dir, "new", name), os.path.join(self.dir, to, name))

    def _prune_processed(self) -> None:
        cutoff = time.time() - KEEP_PROCESSED_SECONDS
        cur = os.path.join(self.dir, "cur")
        for name in os.listdir(cur):
            path = os.path.join(cur, name)
            with contextlib.suppress(OSError):
                if os.path.getmtime(path) < cutoff:
                    os.unlink(path)


def _envelope_recipients(raw: bytes) -> list[str]:
    head = raw[:8192]
    m = _ENVELOPE_TO.search(head)
    if not m:
        return []
    return [a.strip().strip("<>") for a in m.group(1).decode("utf-8", "replace").split(",") if a.strip()]

