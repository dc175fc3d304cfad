"""The acceptance pipeline every front end shares (SMTP submission, the HTTP API): from a sender,
recipients and RFC 5322 content to a NewMessage (Received / Message-ID / Date, List-Unsubscribe,
DKIM signature, stream, pool, priority, tenant), and from a NewMessage to a durable spool write
whose outcome each front end turns into its own answer (an SMTP reply, an HTTP status)."""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from mta.compliance.dkim.signer import DkimSigner
from mta.compliance.dkim.worker import SigningWorker
from mta.compliance.unsubscribe import (
    UnsubscribeTokens,
    has_list_unsubscribe,
    list_unsubscribe_headers,
    one_click_recipient,
)
from mta.config import Config
from mta.metrics import Metrics
from mta.model import MessageInfo, NewMessage
from mta.spool import SpoolClosed
from mta.spool.diskspace import DiskGuard, is_disk_full
from mta.spool.ids import new_queue_id
from mta.submission import headers as hdr
from mta.tracking.inject import opted_out, track_message
from mta.tracking.tokens import TrackingTokens
from mta.wireform import goes_as_is

log = logging.getLogger("mta.submission")

INTERNAL_HEADERS = {b"x-tenant"}


@dataclass(slots=True)
class Submission:
    """What a front end knows of one message before it becomes a NewMessage."""

    sender: str                  # envelope sender, "" for the null sender
    recipients: list[str]
    content: bytes               # the RFC 5322 message as the client gave it
    client_ip: str
    helo: str                    # the client's name for the Received field
    protocol: str                # "ESMTPSA", "HTTP", ...
    tenant: str = ""             # decided by the front end (user, API key); see header_tenant
    header_tenant: bool = False  # a trusted SMTP client may name the tenant in X-Tenant
    stream: str = ""             # the stream the front end chose ("" = header or default)
    stream_fixed: bool = False   # the front end's stream wins over the stream header
    campaign: str = ""           # "" = from the campaign header
    auth_user: str = ""
    smtputf8: bool = False
    send_at: float = 0.0         # not due before this time (a scheduled send); 0 = now
    track: bool | None = None    # open/click tracking: None = as the stream or tenant says; False = off
    variant: str = ""            # A/B variant name, carried in tracking tokens and events
    content_as_is: bool = False  # the front end checked: `content` goes on the wire unchanged


class Outcome(enum.Enum):
    QUEUED = "queued"
    SHUTTING_DOWN = "shutting_down"
    NO_SPACE = "no_space"
    FAILED = "failed"


@dataclass(slots=True)
class Accepted:
    outcome: Outcome
    info: MessageInfo | None = None


class MessageBuilder:
    """Pure but for the queue id and the DKIM key: turns a Submission into a NewMessage."""

    def __init__(self, cfg: Config, signer: DkimSigner | None = None,
                 unsubscribe_tokens: UnsubscribeTokens | None = None,
                 tracking_tokens: TrackingTokens | None = None, defer_signing: bool = False) -> None:
        self.cfg = cfg
        self.signer = signer
        # With a signing worker (another process) the Injector signs, awaiting it before the answer.
        self.defer_signing = defer_signing
        self.unsubscribe_tokens = unsubscribe_tokens
        self.tracking_tokens = tracking_tokens
        self.stream_header = cfg.submission.stream_header
        self.campaign_header = cfg.submission.campaign_header
        self.track_header = cfg.tracking.header if tracking_tokens is not None else ""
        internal = (self.stream_header, self.campaign_header, self.track_header)
        self.strip = INTERNAL_HEADERS | {h.lower().encode() for h in internal if h}

    def build(self, sub: Submission, now: float) -> NewMessage:
        cfg = self.cfg
        qid = new_queue_id()
        head, rest = hdr.split_headers(sub.content)
        fields = hdr.header_fields(head)
        facts = hdr.read_facts(head, self.stream_header, self.campaign_header, fields)
        stream = self.stream(sub, facts.stream)
        tenant = sub.tenant or (facts.tenant if sub.header_tenant else "")
        track = self._tracks(sub, stream, tenant, head)
        head = hdr.remove_fields(head, self.strip, fields)
        sending_domain = facts.from_domain or sub.sender.rpartition("@")[2].lower() or cfg.mta.hostname
        rcpts = sub.recipients
        added = hdr.received_field(helo=sub.helo or "unknown", client_ip=sub.client_ip, hostname=cfg.mta.hostname,
                                   protocol=sub.protocol, queue_id=qid,
                                   recipient=rcpts[0] if len(rcpts) == 1 else None, now=now)
        message_id = facts.message_id
        if not message_id:
            message_id = hdr.make_message_id(qid, cfg.mta.hostname)
            added += f"Message-ID: {message_id}\r\n".encode()
        if not facts.has_date:
            added += hdr.date_field(max(now, sub.send_at))
        head += self._unsubscribe_fields(stream, rcpts, tenant, sending_domain, qid, head)
        rewritten = track and self.tracking_tokens is not None
        if rewritten:
            # Before signing: the signature must cover the rewritten links and the pixel.
            t = self.cfg.tracking
            content = track_message(head + rest, self.tracking_tokens, base_url=t.base_url, queue_id=qid,
                                    recipient=rcpts[0], tenant=tenant, campaign=sub.campaign or facts.campaign,
                                    variant=sub.variant, accepted_at=now, clicks=t.clicks, opens=t.opens).message
            body = added + content
        else:
            body = b"".join((added, head, rest))    # one copy of the content, not two
        # After the header block the content is the client's, which the front end checked: only
        # the fields added here and the (edited) header block are asked, a few hundred bytes,
        # where the whole body would cost a full scan at every delivery attempt.
        as_is = sub.content_as_is and not rewritten and goes_as_is(added) and goes_as_is(head)
        stream_cfg = cfg.stream(stream)
        # A scheduled message's queue age (and so its expiry) counts from its send time.
        created = sub.send_at if sub.send_at > now else now
        msg = NewMessage(queue_id=qid, sender=sub.sender, recipients=list(rcpts), body=body, created=created,
                         stream=stream, priority=stream_cfg.priority, tenant=tenant, pool=stream_cfg.pool,
                         sending_domain=sending_domain, header_message_id=message_id,
                         campaign=sub.campaign or facts.campaign, smtputf8=sub.smtputf8, client=sub.client_ip,
                         auth_user=sub.auth_user, not_before=sub.send_at if sub.send_at > now else 0.0,
                         variant=sub.variant, body_as_is=as_is)
        if self.signer is not None and not self.defer_signing:
            # Last, so the signature covers every header we added (RFC 8058 wants List-Unsubscribe
            # signed); once per message, never per delivery attempt.
            prepend_signature(msg, self.signer.sign(body, facts.from_domain or sending_domain))
        return msg

    def _tracks(self, sub: Submission, stream: str, tenant: str, head: bytes) -> bool:
        """Tracked: a tracked stream or tenant, not turned off by the request or the message's
        header, and one recipient (a token names who opened or clicked)."""
        if self.tracking_tokens is None or sub.track is False or len(sub.recipients) != 1:
            return False
        if not self.cfg.tracking.tracks(stream, tenant) and sub.track is not True:
            return False
        return not opted_out(head, self.track_header)

    def stream(self, sub: Submission, header_stream: str) -> str:
        streams = self.cfg.streams
        if sub.stream_fixed and sub.stream in streams:
            return sub.stream         # the operator's setting for this user (or the API request) wins
        if header_stream in streams:
            return header_stream
        return self.cfg.submission.default_stream

    def _unsubscribe_fields(self, stream: str, rcpts: list[str], tenant: str, sending_domain: str, qid: str,
                            head: bytes) -> bytes:
        """List-Unsubscribe / -Post (RFC 8058) for streams that want them, one recipient per message."""
        u = self.cfg.unsubscribe
        if self.unsubscribe_tokens is None or stream not in u.streams or has_list_unsubscribe(head):
            return b""
        recipient = one_click_recipient(rcpts)
        if recipient is None:
            return b""
        return list_unsubscribe_headers(self.unsubscribe_tokens, recipient=recipient, tenant=tenant,
                                        sending_domain=sending_domain, queue_id=qid, https_base=u.https_base,
                                        mailto_domain=u.mailto_domain)


def prepend_signature(msg: NewMessage, signature: bytes) -> None:
    """Puts a DKIM-Signature field in front of the message; it still goes as it is only if the
    signature's own lines do."""
    msg.body = signature + msg.body
    msg.body_as_is = msg.body_as_is and goes_as_is(signature)


class Injector:
    """The durable write every front end ends with: the answer comes only after the fsync."""

    def __init__(self, accept: Callable[..., Awaitable[MessageInfo]], metrics: Metrics,
                 disk: DiskGuard | None = None, sign_worker: SigningWorker | None = None) -> None:
        self.accept = accept
        self.metrics = metrics
        self.disk = disk
        self.sign_worker = sign_worker      # DKIM on the second core (MessageBuilder(defer_signing=True))

    def room_for(self, size: int) -> bool:
        return self.disk is None or self.disk.room_for(size)

    def refuse(self, reason: str) -> None:
        self.metrics.refusals.labels(reason).inc()

    async def inject(self, msg: NewMessage, listener: str, client: str, also: Callable[..., object] | None = None,
                     started: float | None = None) -> Accepted:
        started = time.perf_counter() if started is None else started
        try:
            if self.sign_worker is not None:
                # Last, as in MessageBuilder.build: the signature covers every header added there.
                prepend_signature(msg, await self.sign_worker.sign(msg.body, msg.sending_domain))
            info = await (self.accept(msg, also) if also is not None else self.accept(msg))
        except SpoolClosed:
            return Accepted(Outcome.SHUTTING_DOWN)
        except Exception as exc:
            if is_disk_full(exc):
                # The guard logs the episode once; each refusal is only counted.
                if self.disk is not None:
                    self.disk.note_full(exc)
                self.refuse("insufficient_storage")
                return Accepted(Outcome.NO_SPACE)
            log.exception("could not queue a message from %s", client)
            self.refuse("spool_error")
            return Accepted(Outcome.FAILED)
        self.metrics.accepted_messages.labels(listener).inc()
        self.metrics.accepted_bytes.inc(len(msg.body))
        self.metrics.accept_seconds.observe(time.perf_counter() - started)
        return Accepted(Outcome.QUEUED, info)
