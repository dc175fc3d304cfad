"""The inbound listener's policy: accept only our own VERP return paths (valid HMAC) and the
configured feedback-loop addresses; everything else is refused, nothing is relayed.

Accepted reports are written durably (file + fsync + rename) into `<spool>/inbound/new/` before
the 250, Maildir-style, where the bounce processor picks them up.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from mta.compliance.unsubscribe import InvalidToken, UnsubscribeInfo, UnsubscribeTokens, token_from_address
from mta.config import Config
from mta.inbound.verp import decode as verp_decode
from mta.metrics import Metrics
from mta.spool.diskspace import INSUFFICIENT_STORAGE, DiskGuard, declared_size, is_disk_full
from mta.spool.ids import new_queue_id

log = logging.getLogger("mta.inbound")


class InboundHandler:
    def __init__(self, cfg: Config, verp_key: bytes, metrics: Metrics,
                 clock: Callable[[], float] = time.time, on_stored: Callable[[], None] | None = None,
                 unsubscribe_tokens: UnsubscribeTokens | None = None,
                 on_unsubscribe: Callable[[UnsubscribeInfo], Awaitable[None]] | None = None,
                 disk: DiskGuard | None = None) -> None:
        self.cfg = cfg
        self.disk = disk
        self.verp_key = verp_key
        self.metrics = metrics
        self.clock = clock
        self.on_stored = on_stored
        self.unsubscribe_tokens = unsubscribe_tokens
        self.on_unsubscribe = on_unsubscribe
        self.bounce_domains = cfg.bounce_domains()
        self.feedback = {a.lower() for a in cfg.inbound.feedback_addresses}
        self.dir = os.path.join(cfg.mta.spool_dir, "inbound")
        for sub in ("tmp", "new"):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)

    def acceptable(self, address: str) -> bool:
        lower = address.lower()
        if lower in self.feedback:
            return True
        return verp_decode(self.verp_key, lower, self.bounce_domains) is not None

    async def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname
        lines = [r for r in responses[:-1] if not r.startswith("250-AUTH")]
        return [*lines, "250-PIPELINING", "250-ENHANCEDSTATUSCODES", "250 HELP"]

    def _no_room(self, size: int) -> bool:
        if self.disk is not None and not self.disk.room_for(size):
            self.metrics.refusals.labels("insufficient_storage").inc()
            return True
        return False

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        if self._no_room(declared_size(options)):
            return INSUFFICIENT_STORAGE
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 Sender OK"

    def unsubscribe_info(self, address: str) -> UnsubscribeInfo | None:
        """The request behind a valid `unsub-TOKEN@<mailto domain>` address, else None."""
        if self.unsubscribe_tokens is None:
            return None
        token = token_from_address(address, self.cfg.unsubscribe.mailto_domain)
        if token is None:
            return None
        try:
            return self.unsubscribe_tokens.verify(token)
        except InvalidToken:
            return None

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        if self.unsubscribe_info(address) is not None:
            envelope.rcpt_tos.append(address)
            return "250 2.1.5 Recipient OK"
        if not self.acceptable(address):
            self.metrics.refusals.labels("inbound_unknown_recipient").inc()
            return "550 5.1.1 No such recipient here"
        if len(envelope.rcpt_tos) >= 100:
            return "452 4.5.3 Too many recipients"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Recipient OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        qid = new_queue_id()
        reports = []
        for rcpt in envelope.rcpt_tos:
            info = self.unsubscribe_info(rcpt)
            if info is None:
                reports.append(rcpt)
            elif self.on_unsubscribe is not None:
                await self.on_unsubscribe(info)     # mailto unsubscribe: the message itself is not kept
        if not reports:
            return f"250 2.0.0 Ok: unsubscribe recorded ({qid})"
        if self._no_room(len(envelope.content)):
            return INSUFFICIENT_STORAGE
        peer = session.peer[0] if isinstance(session.peer, tuple) else "unknown"
        head = (f"X-Warmup-Envelope-From: <{'' if envelope.mail_from == '<>' else envelope.mail_from}>\r\n"
                f"X-Warmup-Envelope-To: {', '.join('<' + r + '>' for r in envelope.rcpt_tos)}\r\n"
                f"X-Warmup-Client: {peer}\r\n").encode("utf-8", "surrogateescape")
        try:
            self._store(qid, head + envelope.content)
        except OSError as exc:
            if is_disk_full(exc):
                if self.disk is not None:
                    self.disk.note_full(exc)
                self.metrics.refusals.labels("insufficient_storage").inc()
                return INSUFFICIENT_STORAGE
            log.error("cannot store inbound report: %s", exc)
            return "451 4.3.0 Temporary failure writing the message, try again later"
        self.metrics.accepted_messages.labels("inbound").inc()
        if self.on_stored is not None:
            self.on_stored()
        return f"250 2.0.0 Ok: queued as {qid}"

    def _store(self, qid: str, data: bytes) -> None:
        name = f"{int(self.clock())}.{qid}.eml"
        tmp = os.path.join(self.dir, "tmp", name)
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, os.path.join(self.dir, "new", name))
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)          # a half-written report must not keep the space (full disk)
            raise
        fd = os.open(os.path.join(self.dir, "new"), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
