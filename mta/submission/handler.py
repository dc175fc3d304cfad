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
from mta.compliance.unsubscribe import UnsubscribeTokens
from mta.config import Config
from mta.metrics import Metrics
from mta.model import MessageInfo, NewMessage
from mta.spool.diskspace import INSUFFICIENT_STORAGE, DiskGuard, declared_size
from mta.submission.addresses import check_recipient, check_sender
from mta.submission.auth import User
from mta.submission.pipeline import Injector, MessageBuilder, Outcome, Submission
from mta.tracking.tokens import TrackingTokens

log = logging.getLogger("mta.submission")

class SubmissionHandler:
    def __init__(self, cfg: Config, accept: Callable[[NewMessage], Awaitable[MessageInfo]], metrics: Metrics,
                 clock: Callable[[], float] = time.time, listener: str = "submission",
                 signer: DkimSigner | None = None, unsubscribe_tokens: UnsubscribeTokens | None = None,
                 disk: DiskGuard | None = None, tracking_tokens: TrackingTokens | None = None,
                 sign_worker: SigningWorker | None = None) -> None:
        self.cfg = cfg
        self.disk = disk
        self.accept = accept
        self.metrics = metrics
        self.clock = clock
        self.listener = listener
        self.trusted = [ipaddress.ip_network(n, strict=False) for n in cfg.submission.trusted_networks]
        self.builder = MessageBuilder(cfg, signer, unsubscribe_tokens, tracking_tokens,
                                      defer_signing=sign_worker is not None)
        self.injector = Injector(accept, metrics, disk, sign_worker)

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
        if not self.injector.room_for(len(envelope.content)):
            self.refuse("insufficient_storage")
            return INSUFFICIENT_STORAGE
        msg = self.build(session, envelope, now)
        result = await self.injector.inject(msg, self.listener, self._client_ip(session), started=started)
        if result.outcome is Outcome.SHUTTING_DOWN:
            return "421 4.3.2 Service shutting down, try again later"
        if result.outcome is Outcome.NO_SPACE:
            return INSUFFICIENT_STORAGE
        if result.outcome is Outcome.FAILED:
            return "451 4.3.0 Temporary failure writing the message to disk, try again later"
        assert result.info is not None
        return f"250 2.0.0 Ok: queued as {result.info.queue_id}"

    # ------------------------------------------------------------------ message
    def build(self, session: Any, envelope: Any, now: float) -> NewMessage:
        user: User | None = session.auth_data if isinstance(session.auth_data, User) else None
        protocol = "ESMTP" if session.extended_smtp else "SMTP"
        if session.ssl:
            protocol += "S"
        if session.authenticated:
            protocol += "A"
        sub = Submission(sender="" if envelope.mail_from == "<>" else envelope.mail_from,
                         recipients=list(envelope.rcpt_tos), content=envelope.content,
                         client_ip=self._client_ip(session), helo=session.host_name or "unknown", protocol=protocol,
                         tenant=user.tenant if user and user.tenant else "",
                         header_tenant=not (user and user.tenant) and self._trusted(session),
                         stream=user.stream if user else "", stream_fixed=bool(user and user.stream),
                         auth_user=user.name if user else "", smtputf8=bool(envelope.smtp_utf8),
                         content_as_is=envelope.content_as_is)
        return self.builder.build(sub, now)
