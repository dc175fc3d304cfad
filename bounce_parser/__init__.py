"""Bounce, DSN and complaint parsing, and SMTP reply classification, with one reason taxonomy.

A pure library: bytes in, plain dataclasses out, no sockets and no file access (the
``bounce-parse`` command in ``cli`` reads files).

``parse_bytes(raw) -> ParseResult``
    One message: an RFC 3464 DSN, a non-standard bounce, an ARF (RFC 5965) complaint, an SES
    event or an auto-reply.  ``result.kind`` is ``dsn``, ``arf``, ``bounce`` or ``none``;
    ``result.records`` holds one ``BounceRecord`` per recipient.  Never raises.
``split_mbox(raw) -> list[bytes]`` / ``parse_mbox(raw) -> list[ParseResult]``
    The same for every message of an mbox (a single message passes through unchanged).
``classify_reply(code, status, text, command="", remote_host="") -> Classification``
    A synchronous SMTP reply: ``reason`` (the taxonomy name the reference labelling gives it)
    and ``hard``; ``kind`` (what the policy acts on: ``delivered``, ``throttled``, ``blocked``,
    ``auth``, ``hard``, ``soft``), ``permanent``, ``detail`` (a finer name such as
    ``speeding``), ``rule`` (what decided the kind) and ``reason_rule`` (what decided the name).
``REASONS``, ``FINER_REASONS``, ``is_hard(reason, status)``
    The taxonomy of shared/corpus/bounces/README.md and its hard/soft rule.

    >>> found = classify_reply(421, "4.7.0", "[TSS04] Messages from 192.0.2.1 temporarily deferred "
    ...                        "due to unexpected volume or user complaints")
    >>> (found.reason, found.kind, found.detail)
    ('blocked', 'throttled', 'speeding')
"""

from __future__ import annotations

from .classifier import classify, classify_reply
from .mbox import is_mbox, split_mbox
from .model import (
    KIND_ARF,
    KIND_BOUNCE,
    KIND_DSN,
    KIND_NONE,
    AuthResult,
    BounceRecord,
    Classification,
    ParseResult,
)
from .parser import parse_bytes, parse_message
from .reasons import FINER_REASONS, HARD_REASONS, REASONS, coarse_reason, is_hard, softness


def parse_mbox(raw: bytes) -> list[ParseResult]:
    """Parse every message of an mbox (or a single message) held in ``raw``."""
    return [parse_bytes(message) for message in split_mbox(raw)]


__all__ = [
    "FINER_REASONS",
    "HARD_REASONS",
    "KIND_ARF",
    "KIND_BOUNCE",
    "KIND_DSN",
    "KIND_NONE",
    "REASONS",
    "AuthResult",
    "BounceRecord",
    "Classification",
    "ParseResult",
    "classify",
    "classify_reply",
    "coarse_reason",
    "is_hard",
    "is_mbox",
    "parse_bytes",
    "parse_mbox",
    "parse_message",
    "softness",
    "split_mbox",
]
