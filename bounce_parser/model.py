"""Plain data that flows out of the parser and the reply classifier."""

from __future__ import annotations

from dataclasses import dataclass, field

# Values of BounceRecord.kind / ParseResult.kind.
KIND_DSN = "dsn"  # RFC 3464 delivery status notification
KIND_ARF = "arf"  # RFC 5965 feedback report (complaint)
KIND_BOUNCE = "bounce"  # any non-standard bounce, auto-reply or provider notification
KIND_NONE = "none"  # not a bounce: no records


@dataclass(frozen=True, slots=True)
class Classification:
    """What an SMTP reply (or a bounce's diagnostic) means.

    ``reason`` is the taxonomy name as the reference labelling gives it, and ``hard`` follows
    from it.  ``kind`` is what the policy daemon acts on: ``delivered``, ``throttled`` (slow
    down), ``blocked`` (this source IP or domain is refused), ``auth`` (authentication of the
    sending domain failed), ``hard`` (the address is gone), ``soft`` (anything else).  The two
    may differ: a TSS04 deferral is named ``blocked`` but is a throttle.  ``detail`` is a finer
    name from ``FINER_REASONS`` refining the kind (``speeding`` for a throttle) or "";
    ``rule`` names the table entry that decided the kind, so an automatic action can cite it,
    and ``reason_rule`` the convention that decided the name.
    """

    reason: str
    hard: bool
    kind: str
    permanent: bool = False
    detail: str = ""
    rule: str = ""
    reason_rule: str = ""


@dataclass(frozen=True, slots=True)
class AuthResult:
    """One method result of an Authentication-Results header (``spf=pass`` ...)."""

    method: str
    result: str
    properties: tuple[tuple[str, str], ...] = ()


@dataclass(slots=True)
class BounceRecord:
    """One recipient found in a bounce, DSN or feedback report."""

    recipient: str
    kind: str
    reason: str
    hard: bool
    action: str = ""
    status: str = ""
    diagnostic: str = ""
    remote_mta: str = ""
    message_id: str = ""
    feedback_type: str = ""
    reply_code: int | None = None
    command: str = ""
    detail: str = ""
    reply_kind: str = ""
    rule: str = ""
    reason_rule: str = ""
    authentication_results: tuple[AuthResult, ...] = ()

    def to_json_dict(self, file: str) -> dict[str, object]:
        """The object ``bounce-parse --json`` prints (keys fixed by shared/interfaces.md)."""
        return {
            "file": file,
            "kind": self.kind,
            "recipient": self.recipient,
            "action": self.action,
            "status": self.status,
            "reason": self.reason,
            "hard": self.hard,
            "diagnostic": self.diagnostic,
            "feedback_type": self.feedback_type,
            "message_id": self.message_id,
        }


def failure_record(
    classification: Classification,
    *,
    recipient: str,
    kind: str,
    action: str,
    status: str,
    diagnostic: str,
    reply_code: int | None,
    remote_mta: str = "",
    message_id: str = "",
    command: str = "",
) -> BounceRecord:
    """A record for one recipient's failure (or delivery) as the classifier saw it."""
    return BounceRecord(
        recipient=recipient,
        kind=kind,
        reason=classification.reason,
        hard=classification.hard,
        action=action,
        status=status,
        diagnostic=diagnostic,
        remote_mta=remote_mta,
        message_id=message_id,
        reply_code=reply_code,
        command=command,
        detail=classification.detail,
        reply_kind=classification.kind,
        rule=classification.rule,
        reason_rule=classification.reason_rule,
    )


@dataclass(slots=True)
class ParseResult:
    """Everything found in one message; ``kind`` is ``none`` when it was not a bounce."""

    kind: str = KIND_NONE
    records: list[BounceRecord] = field(default_factory=list)
    original_headers: dict[str, str] = field(default_factory=dict)
    defects: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.records)
