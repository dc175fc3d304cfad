"""What one delivery attempt's outcomes turn into: events, feedback for the policy, DSNs,
suppression entries, delivery records and one spool write (in the same transaction as a DSN, so
a bounce and its notification are recorded together or not at all)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from mta.delivery.client import Source
from mta.events import Event
from mta.model import Deferral, Job, MessageInfo, NewMessage
from mta.queue import outcomes as oc
from mta.spool import SpoolStore
from mta.spool.suppression import GLOBAL, Suppression
from mta.spool.suppression import add as add_suppression
from mta.submission.headers import split_headers
from warmup_base.policy_protocol.model import Outcome, feedback_class

if TYPE_CHECKING:
    from mta.queue.scheduler import Scheduler

log = logging.getLogger("mta.queue")


class OutcomeRecorder:
    def __init__(self, scheduler: Scheduler) -> None:
        self.q = scheduler

    async def finish(self, job: Job, outcomes: list[oc.RecipientOutcome], *, site: str,
                     source: Source | None, mx: str) -> None:
        """Events, policy feedback, DSNs, suppression and the spool write for one attempt's outcomes."""
        q = self.q
        msg = job.message
        # First of all, the durable note of what the remote server took (see mta.spool.journal).
        if job.journaled_delivered:     # noted as the reply arrived (Scheduler.deliver)
            job.journaled_delivered = False
        else:
            q.journal.delivered(o.recipient.id for o in outcomes if o.event == "delivered")
        token, attempted = job.take_attempt()

        def settled(ok: bool) -> None:
            if ok and token >= 0:
                q.journal.settle(token, attempted)

        now = q.clock()
        done_ids: list[int] = []
        deferrals: list[Deferral] = []
        failed: list[oc.RecipientOutcome] = []
        deferred: list[oc.RecipientOutcome] = []
        for o in outcomes:
            r = o.recipient
            attempt = r.attempts + 1
            if o.event == "deferred":
                deferrals.append(Deferral(r.id, attempt, o.next_attempt, o.code, o.text, site))
                deferred.append(o)
            else:
                done_ids.append(r.id)
                if o.event in ("bounced", "expired"):
                    failed.append(o)
            q.events.emit(Event(o.event, msg.queue_id, r.address, msg.sender, now, msg.created, site,
                                mx, source.name if source else "", source.address if source else "",
                                o.code, o.status, o.text, o.cls.reason, attempt, msg.stream, msg.tenant,
                                msg.sending_domain, msg.header_message_id, campaign=msg.campaign, variant=msg.variant))
            if source is not None and o.code:
                # mailbox and campaign always: policyd pauses a single sender or campaign with them
                q.grants.report(Outcome(site, q.sites[site].route.host_names if site in q.sites else (),
                                        source.name, msg.sending_domain, msg.tenant, msg.stream,
                                        _feedback_class(o), o.cls.reason, o.code, o.status,
                                        mailbox=msg.sender.lower(), campaign=msg.campaign))
        pushback = source is not None and any(o.cls.kind in ("throttled", "blocked") for o in outcomes)
        if pushback and source is not None and site in q.sites:
            q.sites[site].revoke(source.name)
            q.spawn(q.grants.flush())
        dsn: NewMessage | None = None
        delay_dsn: NewMessage | None = None
        warn = bool(deferred) and self._wants_delay_warning(msg, now)
        if failed or warn:
            headers = split_headers(await q.load_body(job) or b"")[0]
            remote = mx.partition("[")[0]
            stream = q.cfg.streams.get("transactional")
            common = dict(now=now, hostname=q.cfg.mta.hostname, remote_mta=remote,
                          stream="transactional", pool=stream.pool if stream else "default",
                          priority=stream.priority if stream else 0)
            if failed:
                dsn = oc.dsn_for(msg, failed, headers, action="failed", **common)  # type: ignore[arg-type]
            if warn:
                delay_dsn = oc.dsn_for(msg, deferred, headers, action="delayed",
                                       will_retry_until=q.retry.expires_at(msg.created),
                                       **common)  # type: ignore[arg-type]
                msg.warned = True
        q.release(job)
        warned_id = msg.id if delay_dsn is not None else None
        delivered_rows = []
        if source is not None:
            mx_hosts = ",".join(q.sites[site].route.host_names) if site in q.sites else ""
            delivered_rows = [(msg.queue_id, o.recipient.address.lower(), now, source.name, site, mx_hosts,
                               msg.sending_domain, msg.tenant, msg.stream, msg.header_message_id,
                               msg.sender.lower(), msg.campaign, msg.variant)
                              for o in outcomes if o.event == "delivered"]
        suppress = [s for s in (self._suppression_for(o, now) for o in failed) if s is not None]
        for entry in suppress:
            q.suppressed.note(entry.address)

        def record(store: SpoolStore) -> None:
            if deferrals:
                store.defer(deferrals)
            if done_ids:
                store.finish_later(done_ids)
            if warned_id is not None:
                store.set_warned(warned_id)
            if delivered_rows:
                store.record_deliveries(delivered_rows)
            for entry in suppress:
                add_suppression(store.db, entry)

        if dsn is None and delay_dsn is None:
            written = q.spool.submit(record, urgent=True)     # ahead of other writes
            written.add_done_callback(lambda f: settled(not f.cancelled() and f.exception() is None))
        else:
            try:
                if dsn is not None:
                    info = await q.accept(dsn, also=record)
                    q.metrics.dsns.labels("failed").inc()
                    self._note_dsn(failed, info.queue_id)
                    if delay_dsn is not None:
                        await q.accept(delay_dsn)
                        q.metrics.dsns.labels("delayed").inc()
                else:
                    assert delay_dsn is not None
                    await q.accept(delay_dsn, also=record)
                    q.metrics.dsns.labels("delayed").inc()
                settled(True)
            except Exception:
                # Could not queue the DSN: keep the recipients queued rather than lose the news.
                log.exception("queueing a DSN for %s failed; recipients stay queued", msg.queue_id)
                retry_at = now + q.retry.base
                deferrals = [Deferral(o.recipient.id, o.recipient.attempts + 1, retry_at, o.code, o.text, site)
                             for o in outcomes]
                kept = deferrals
                q.spool.post(lambda s: s.defer(kept))
                settled(True)       # their outcome (retry later) is known and written
        domain_of = {o.recipient.id: o.recipient.domain for o in outcomes}
        for d in deferrals:
            domain = domain_of.get(d.recipient_id, job.domain)
            q.note_on_disk(domain, 1)
            q.mark_due(domain, d.next_attempt)

    def _suppression_for(self, o: oc.RecipientOutcome, now: float) -> Suppression | None:
        """A synchronous permanent failure that says something about the address itself."""
        if o.event != "bounced" or not o.code:
            return None
        if o.cls.hard:
            return Suppression(GLOBAL, o.recipient.address, "hard_bounce", now, 0.0, "smtp", o.text)
        cfg = self.q.cfg.suppression
        if o.cls.reason in cfg.soft_reasons:
            return Suppression(GLOBAL, o.recipient.address, "soft_bounce", now, now + cfg.soft_bounce_ttl, "smtp",
                               o.text)
        return None

    def _note_dsn(self, failed: list[oc.RecipientOutcome], dsn_qid: str) -> None:
        for o in failed:
            log.info("%s %s: %s (%s) %s; DSN %s queued", o.event, o.recipient.address, o.cls.reason or "unknown",
                     "hard" if o.cls.hard else "soft", o.text[:200], dsn_qid)

    def _wants_delay_warning(self, msg: MessageInfo, now: float) -> bool:
        warn_after = self.q.cfg.queue.delay_warning
        return bool(warn_after) and not msg.warned and bool(msg.sender) and now - msg.created >= warn_after


def _feedback_class(o: oc.RecipientOutcome) -> str:
    """The health class the policy daemon counts, from the classifier's `kind` (not the reason
    name, which follows the bounce taxonomy: a 5.7.1 "access denied" is `securityerror` there
    without being an authentication failure of ours)."""
    return feedback_class(o.cls.kind, delivered=o.event == "delivered")
