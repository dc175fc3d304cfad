"""Submission policy: who may relay, what each recipient must look like, which stream and tenant a
message belongs to, and the headers we add. The 250 after DATA is sent only once the message is
durable in the spool."""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

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
from mta.spool.diskspace import INSUFFICIENT_STORAGE, DiskGuard, declared_size, is_disk_full
from mta.spool.ids import new_queue_id
from mta.submission import headers as hdr
from mta.submission.addresses import check_recipient, check_sender
from mta.submission.auth import User

log = logging.getLogger("mta.submission")

INTERNAL_HEADERS = {b"x-tenant"}


class SubmissionHandler:
    def __init__(self, cfg: Config, accept: Callable[[NewMessage], Awaitable[MessageInfo]], metrics: Metrics,
                 clock: Callable[[], float] = time.time, listener: str = "submission",
                 signer: DkimSigner | None = None, unsubscribe_tokens: UnsubscribeTokens | None = None,
                 disk: DiskGuard | None = None, sign_worker: SigningWorker | None = None) -> None:
        self.cfg = cfg
        self.disk = disk
        self.accept = accept
        self.metrics = metrics
        self.clock = clock
        self.listener = listener
        self.signer = signer
        self.sign_worker = sign_worker      # signs in another process, instead of build()
        self.unsubscribe_tokens = unsubscribe_tokens
        self.trusted = [ipaddress.ip_network(n, strict=False) for n in cfg.submission.trusted_networks]
        self.stream_header = cfg.submission.stream_header
        self.campaign_header = cfg.submission.campaign_header
        self.strip = INTERNAL_HEADERS | {h.lower().encode() for h in (self.stream_header, self.campaign_header) if h}

    # ------------------------------------------------------------------ relay policy
    def _client_ip(self, session: Any) -> str:
        peer = session.peer
        return peer[0] if isinstance(peer, tuple) else "127.0.0.1"

    def _trusted(self, session: Any) -> bool:
        cached = getattr(session, "mta_trusted", None)
        if cached is None:
            try:
                ip = ipaddress.ip_address(self._client_ip(session))
                cached = any(ip in net for net in self.trusted)
            except ValueError:
                cached = False
            session.mta_trusted = cached
        return cached

    def may_relay(self, session: Any) -> bool:
        return bool(session.authenticated) or self._trusted(session)

    def refuse(self, reason: str) -> None:
        self.metrics.refusals.labels(reason).inc()

    # ------------------------------------------------------------------ hooks
    async def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname
        lines = [r for r in responses[:-1] if not (r.startswith("250-AUTH") and server.check_password is None)]
        lines += ["250-PIPELINING", "250-ENHANCEDSTATUSCODES", "250 HELP"]
        return lines

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str,
                          mail_options: list[str]) -> str:
        if self.disk is not None and not self.disk.room_for(declared_size(mail_options)):
            self.refuse("insufficient_storage")
            return INSUFFICIENT_STORAGE
        sender = "" if address == "<>" else address
        problem = check_sender(sender, envelope.smtp_utf8)
        if problem:
            self.refuse("bad_sender")
            return problem.reply()
        envelope.mail_from = sender or "<>"
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Sender OK"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        if not self.may_relay(session):
            # Deliberately the same answer for every address form: nothing opens a relay.
            self.refuse("relay_denied")
            log.warning("relay denied for %s to <%s>", self._client_ip(session), address)
            return "554 5.7.1 Relay access denied"
        if len(envelope.rcpt_tos) >= self.cfg.submission.max_recipients:
            self.refuse("too_many_recipients")
            return "452 4.5.3 Too many recipients"
        problem = check_recipient(address, envelope.smtp_utf8)
        if problem:
            self.refuse("bad_recipient")
            return problem.reply()
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 Recipient OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        started = time.perf_counter()
        now = self.clock()
        if self.disk is not None and not self.disk.room_for(len(envelope.content)):
            self.refuse("insufficient_storage")
            return INSUFFICIENT_STORAGE
        msg = self.build(session, envelope, now)
        try:
            if self.sign_worker is not None:
                msg.body = await self.sign_worker.sign(msg.body, msg.sending_domain) + msg.body
            info = await self.accept(msg)
        except SpoolClosed:
            return "421 4.3.2 Service shutting down, try again later"
        except Exception as exc:
            if is_disk_full(exc):
                # The guard logs the episode once; each refusal is only counted.
                if self.disk is not None:
                    self.disk.note_full(exc)
                self.refuse("insufficient_storage")
                return INSUFFICIENT_STORAGE
            log.exception("could not queue a message from %s", self._client_ip(session))
            self.refuse("spool_error")
            return "451 4.3.0 Temporary failure writing the message to disk, try again later"
        self.metrics.accepted_messages.labels(self.listener).inc()
        self.metrics.accepted_bytes.inc(len(msg.body))
        self.metrics.accept_seconds.observe(time.perf_counter() - started)
        return f"250 2.0.0 Ok: queued as {info.queue_id}"

    # ------------------------------------------------------------------ message
    def build(self, session: Any, envelope: Any, now: float) -> NewMessage:
        cfg = self.cfg
        qid = new_queue_id()
        content: bytes = envelope.content
        head, rest = hdr.split_headers(content)
        facts = hdr.read_facts(head, self.stream_header, self.campaign_header)
        user: User | None = session.auth_data if isinstance(session.auth_data, User) else None
        stream = self._stream(user, facts.stream)
        tenant = user.tenant if user and user.tenant else (facts.tenant if self._trusted(session) else "")
        head = hdr.remove_fields(head, self.strip)
        sender = "" if envelope.mail_from == "<>" else envelope.mail_from
        sending_domain = facts.from_domain or sender.rpartition("@")[2].lower() or cfg.mta.hostname
        protocol = "ESMTP" if session.extended_smtp else "SMTP"
        if session.ssl:
            protocol += "S"
        if session.authenticated:
            protocol += "A"
        rcpts = envelope.rcpt_tos
        added = hdr.received_field(helo=session.host_name or "unknown", client_ip=self._client_ip(session),
                                   hostname=cfg.mta.hostname, protocol=protocol, queue_id=qid,
                                   recipient=rcpts[0] if len(rcpts) == 1 else None, now=now)
        message_id = facts.message_id
        if not message_id:
            message_id = hdr.make_message_id(qid, cfg.mta.hostname)
            added += f"Message-ID: {message_id}\r\n".encode()
        if not facts.has_date:
            added += hdr.date_field(now)
        head += self._unsubscribe_fields(stream, rcpts, tenant, sending_domain, qid, head)
        body = added + head + rest
        if self.signer is not None and self.sign_worker is None:
            # Last, so the signature covers every header we added (RFC 8058 wants List-Unsubscribe
            # signed); once per message, never per delivery attempt.
            body = self.signer.sign(body, facts.from_domain or sending_domain) + body
        stream_cfg = cfg.stream(stream)
        return NewMessage(queue_id=qid, sender=sender, recipients=list(rcpts), body=body, created=now,
                          stream=stream, priority=stream_cfg.priority, tenant=tenant, pool=stream_cfg.pool,
                          sending_domain=sending_domain, header_message_id=message_id, campaign=facts.campaign,
                          smtputf8=bool(envelope.smtp_utf8), client=self._client_ip(session),
                          auth_user=user.name if user else "")

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

    def _stream(self, user: User | None, header_stream: str) -> str:
        streams = self.cfg.streams
        if user and user.stream in streams:
            return user.stream        # the operator's setting for this user wins over a header
        if header_stream in streams:
            return header_stream
        return self.cfg.submission.default_stream
