"""What a delivery attempt's replies mean for each recipient. Pure: results and a clock in, a plan
out (which recipients are done, which wait until when, which fail and need a DSN)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from mta.delivery.client import RecipientResult
from mta.delivery.replies import Classification, classify
from mta.model import MessageInfo, NewMessage, Recipient
from mta.queue.dsn import RecipientReport, build_dsn
from mta.spool.ids import new_queue_id
from warmup_base.retry import RetryPolicy


@dataclass(slots=True)
class RecipientOutcome:
    recipient: Recipient
    event: str                   # delivered | deferred | bounced | expired
    code: int
    status: str
    text: str
    cls: Classification
    next_attempt: float = 0.0    # for deferred


@dataclass(slots=True)
class OutcomePlan:
    outcomes: list[RecipientOutcome] = field(default_factory=list)

    def of(self, *events: str) -> list[RecipientOutcome]:
        return [o for o in self.outcomes if o.event in events]


def plan(message: MessageInfo, results: list[RecipientResult], now: float, retry: RetryPolicy,
         rng: random.Random, not_before: float = 0.0) -> OutcomePlan:
    out = OutcomePlan()
    expired = retry.expired(now, message.created)
    for res in results:
        cls = classify(res.code, res.status, res.text, res.phase)
        if 200 <= res.code < 300:
            event = "delivered"
        elif res.temporary:
            event = "expired" if expired else "deferred"
        else:
            event = "bounced"
        o = RecipientOutcome(res.recipient, event, res.code, res.status, res.text, cls)
        if event == "deferred":
            o.next_attempt = retry.next_attempt(now, message.created, res.recipient.attempts + 1, rng, not_before)
        out.outcomes.append(o)
    return out


def expired_outcomes(recipients: list[Recipient], last_text: str = "") -> list[RecipientOutcome]:
    text = last_text or "delivery time expired"
    cls = Classification("expired", False, "expired")
    return [RecipientOutcome(r, "expired", 0, "4.4.7", text, cls) for r in recipients]


def dsn_for(message: MessageInfo, outcomes: list[RecipientOutcome], original_headers: bytes, *,
            action: str, now: float, hostname: str, remote_mta: str, will_retry_until: float = 0.0,
            stream: str, pool: str, priority: int) -> NewMessage | None:
    """The DSN to the envelope sender, or None when there must be none (null sender)."""
    if not message.sender or not outcomes:
        return None
    qid = new_queue_id()
    reports = []
    for o in outcomes:
        status = o.status
        if action == "failed" and o.event == "expired" and not status.startswith("5"):
            status = "4.4.7"
        diagnostic = o.text if o.code else ""
        reports.append(RecipientReport(o.recipient.address, action, status, remote_mta if o.code else "",
                                       diagnostic, now, will_retry_until))
    body = build_dsn(reports=reports, original_sender=message.sender, original_headers=original_headers,
                     queue_id=message.queue_id, arrival=message.created, now=now, reporting_mta=hostname,
                     dsn_queue_id=qid)
    return NewMessage(queue_id=qid, sender="", recipients=[message.sender], body=body, created=now,
                      stream=stream, priority=priority, tenant=message.tenant, pool=pool,
                      sending_domain=hostname, header_message_id=f"<{qid}.dsn@{hostname}>",
                      smtputf8=not message.sender.isascii())
