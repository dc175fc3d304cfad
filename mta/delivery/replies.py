"""The MTA's view of an SMTP reply: the product's one reason taxonomy (bounce_parser) plus the
class the policy acts on. A thin adapter so the queue does not depend on the parser's details."""

from __future__ import annotations

from dataclasses import dataclass

from bounce_parser.classifier import classify_reply


@dataclass(frozen=True, slots=True)
class Classification:
    reason: str     # taxonomy name: userunknown, toomanyconn, blocked, ...
    hard: bool      # suppresses the address
    kind: str       # delivered | throttled | blocked | auth | hard | soft | expired


_COMMANDS = {"mail": "MAIL", "rcpt": "RCPT", "data": "DATA", "connect": "CONN"}


def classify(code: int, status: str, text: str, phase: str = "") -> Classification:
    """`phase` is the transaction step the reply answered (mail, rcpt, data): a "user unknown"
    at RCPT is about the address, after DATA it is a content filter's verdict."""
    if code == 0:
        # No reply at all: the network or DNS failed, nothing is known about the recipient.
        return Classification("networkerror", False, "soft")
    c = classify_reply(code, status, text, command=_COMMANDS.get(phase, ""))
    return Classification(c.reason, c.hard, c.kind)
