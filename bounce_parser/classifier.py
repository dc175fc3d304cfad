"""Turn an SMTP reply (or a bounce's diagnostic) into a ``Classification``.

The same function serves the MTA's delivery outcomes (synchronous replies) and the bounce
parser, so a "421 4.7.0 [TSS04]" means the same thing whether it came back live or in a DSN.
A classification answers two questions, kept apart on purpose:

* what the outcome is *called*: ``reason``, the taxonomy name as the reference labelling gives
  it (``naming``), and ``hard``, which follows from it (README rule);
* what the warm-up policy must *do*: ``kind`` (``throttled``, ``blocked``, ``auth`` ...) and
  ``detail`` (``speeding``, ``authfailure`` ...), from the policy's own reading below.

So Yahoo's TSS04 is ``reason="blocked"`` (the labels' name) with ``kind="throttled"``,
``detail="speeding"`` (slow down, do not pause).  The policy reading consults the knowledge in
``patterns`` in this order:

1. success (2.x.x status, 2xx code, or a DSN action of ``delivered``);
2. provider rules: exact meanings the warm-up policy acts on (rate limit vs block vs auth);
3. wordings, checked against the enhanced status for the few cases where the two disagree in a
   known way (a "user unknown" answer to DATA is a content filter, not a missing mailbox);
4. the enhanced status alone;
5. the SMTP command the reply answered (a refused MAIL FROM is about the sender);
6. what is left: ``expired`` for a delayed report, ``onhold`` when a failure said too little.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from . import naming, patterns, smtp_text
from .model import Classification
from .reasons import FINER_REASONS, NOT_A_FAILURE, is_hard
from .wordings import first_reason, reasons_in

# Statuses whose own reason beats a "user unknown" wording (an unknown *sender* is a refused
# sender, an unknown user whose mailbox is full is a full mailbox).
_STATUS_BEATS_UNKNOWN_USER = frozenset({"rejected", "mailboxfull", "mesgtoobig", "exceedlimit", "hasmoved"})
# Wordings about a recipient address (which mean something else when the command says the
# reply was not about a recipient).
_ABOUT_THE_ADDRESS = frozenset({"userunknown", "hostunknown", "filtered", "suspend"})


def _provider_rule(text: str, status: str) -> patterns.ProviderRule | None:
    for compiled in patterns.COMPILED_PROVIDER_RULES:
        rule = compiled.rule
        matched = (status and status in rule.statuses) or (
            compiled.pattern is not None and compiled.pattern.search(text) is not None
        )
        if matched and (compiled.requires is None or compiled.requires.search(text)):
            return rule
    return None


def phrase_reason(text: str) -> str:
    """The first reason (in precedence order) whose wording occurs in ``text``, or ""."""
    return first_reason(text)


def status_reason(status: str) -> tuple[str, str]:
    """``(reason, detail)`` that an enhanced status implies on its own, or ``("", "")``."""
    subject_detail = status.partition(".")[2]
    reason = patterns.STATUS_REASONS.get(status, patterns.STATUS_REASONS.get(subject_detail, ""))
    return reason, patterns.STATUS_DETAILS.get(subject_detail, "")


def _is_generic(status: str) -> bool:
    return not status or status.endswith(".0.0")


def _combine(wording: str, by_status: str, command: str, status: str) -> str:
    """Settle the known disagreements between a wording and the status or the command."""
    if command in ("CONN", "HELO") and wording in _ABOUT_THE_ADDRESS | {"rejected", "syntaxerror", "onhold"}:
        return "blocked"  # refused before any address was given: it is about the sending host
    if command == "MAIL" and wording in _ABOUT_THE_ADDRESS:
        return "rejected"  # "no such user/domain" in answer to MAIL FROM is about the sender
    if wording == "userunknown":
        if by_status in _STATUS_BEATS_UNKNOWN_USER:
            return by_status
        if by_status == "userunknown" or command == "RCPT":
            return "userunknown"
        if by_status == "filtered" or (command == "DATA" and _is_generic(status)):
            # The address was accepted at RCPT time; refusing it after the content was seen is
            # a filter on that recipient's side.
            return "filtered"
        return "userunknown"
    if wording == "mesgtoobig" and by_status == "exceedlimit":
        return "exceedlimit"
    if wording == "spamdetected" and by_status == "contenterror":
        return "contenterror"
    if wording == "policyviolation" and by_status == "securityerror":
        return "securityerror"
    return wording


def _fallback(status: str, code: int | None, text: str, command: str, action: str) -> str:
    if command == "MAIL":
        return "rejected"
    if command in ("CONN", "HELO"):
        return "blocked"
    if action == "delayed":
        return "expired"
    if status or code or text.strip():
        return "onhold"
    return "undefined"


# The policy daemon's coarse class of an outcome, where the reason alone decides it.
_KIND_OF_REASON = {
    "delivered": "delivered",
    "toomanyconn": "throttled",
    "blocked": "blocked",
    "securityerror": "auth",
    "feedback": "complaint",
    "vacation": "autoreply",
}


def reply_kind(reason: str, hard: bool) -> str:
    """The kind a policy reading of ``reason`` implies: ``delivered``, ``throttled``, ``blocked``,
    ``auth``, ``complaint``, ``autoreply``, ``hard`` or ``soft``."""
    return _KIND_OF_REASON.get(reason, "hard" if hard else "soft")


_CLASS_OF_ACTION = {"failed": "5.0.0", "delayed": "4.0.0"}


@dataclass(frozen=True, slots=True)
class _PolicyView:
    """What the warm-up policy reads into a reply: a coarse reason (for ``kind``), a finer name."""

    reason: str
    detail: str = ""
    rule: str = ""
    names_as: str = ""  # a provider rule's taxonomy name for the reply


def _result(
    reason: str,
    policy: _PolicyView,
    status: str,
    code: int | None,
    action: str = "",
    reason_rule: str = "",
) -> Classification:
    # Without a status or a reply code, a report's action still tells permanent from temporary.
    effective_status = status or (f"{code // 100}.0.0" if code else _CLASS_OF_ACTION.get(action, ""))
    hard = is_hard(reason, effective_status)
    permanent = effective_status.startswith("5")
    detail = policy.detail
    if detail and FINER_REASONS.get(detail) != policy.reason:
        detail = ""  # a finer name must always belong to the coarse reason it refines
    if reason in NOT_A_FAILURE:
        kind = reply_kind(reason, hard)
    else:
        # The address itself being gone is a fact whoever reads it; otherwise the policy's
        # reading decides whether to slow down, back off or pause (a Yahoo TSS04 is named
        # "blocked" but acted on as a throttle).
        kind = "hard" if hard else _KIND_OF_REASON.get(policy.reason, "soft")
    return Classification(
        reason=reason,
        hard=hard,
        kind=kind,
        permanent=permanent,
        detail=detail,
        rule=policy.rule,
        reason_rule=reason_rule or policy.rule,
    )


def _policy_view(
    line: str, status: str, code: int | None, command: str, action: str, context: Sequence[str], recipient: str
) -> _PolicyView:
    """The reply as the warm-up policy reads it: provider rules first, then wording and status."""
    by_status, status_detail = status_reason(status) if status else ("", "")
    wording = ""
    # The diagnostic itself first; the report's surrounding words only when it says nothing.
    for candidate in (line, *(smtp_text.join_continuations(smtp_text.collapse(extra)) for extra in context)):
        if not candidate:
            continue
        rule = _provider_rule(candidate, status)
        if rule is not None:
            return _PolicyView(rule.reason, rule.detail, rule.name, rule.names_as)
        wording = phrase_reason(candidate)
        if wording:
            if _is_generic(status):
                # The words that named the reason may also quote the status that goes with it.
                quoted = smtp_text.find_status(candidate)
                if quoted and not _is_generic(quoted):
                    status = quoted
                    by_status, status_detail = status_reason(status)
            break
    if wording:
        reason = _combine(wording, by_status, command, status)
        return _PolicyView(reason, status_detail if reason == by_status else "", f"wording:{wording}")
    if by_status:
        return _PolicyView(_combine(by_status, by_status, command, status), status_detail, f"status:{status}")
    reason = _fallback(status, code, line, command, action)
    if reason == "onhold" and recipient:
        domain = recipient.rpartition("@")[2]
        reason = patterns.RECIPIENT_DOMAIN_REASONS.get(domain, reason)
    return _PolicyView(reason, "", f"fallback:{command or action or 'none'}")


def _local_program_failed(line: str) -> bool:
    """Is an X-Unix diagnostic about the delivery program itself?

    Its exit status, its own failure ("procmail: Couldn't create ...") or nothing recognisable
    is; a sentence that says why the mailbox refused ("mailbox has exceeded its disk space
    limit") is read like any reply.
    """
    words = reasons_in(line)
    return line.strip().isdigit() or not words or "mailererror" in words


def classify(
    *,
    code: int | None = None,
    status: str = "",
    text: str = "",
    context: Sequence[str] = (),
    command: str = "",
    action: str = "",
    diagnostic_type: str = "",
    recipient: str = "",
    remote_host: str = "",
    family: str = "",
    vendor_category: str = "",
    prose_only: bool = False,
) -> Classification:
    """Classify a failure (or success) from everything known about it.

    ``text`` is the diagnostic; ``context`` holds other texts of the report (the lines around
    the recipient, then the whole human-readable part), consulted in order only when the
    diagnostic matches no wording.  ``remote_host`` (the server that answered), ``family`` (the
    system that wrote the bounce, see ``families``) and ``vendor_category`` (a vendor's own
    classification field) only matter for naming the reason, as does ``prose_only`` (the report
    had no diagnostic field, so all its own words speak for the recipient).
    """
    line = smtp_text.join_continuations(smtp_text.collapse(text))
    field_status = status.strip()
    status = field_status
    quoted_status = smtp_text.find_status(line)
    if _is_generic(status) and quoted_status and not _is_generic(quoted_status):
        status = quoted_status  # "Status: 5.0.0" over a reply that says 5.7.26
    if code is None:
        code = smtp_text.find_reply_code(line)
    command = smtp_text.normalise_command(command) or smtp_text.find_command(line)
    action = action.strip().lower()

    if action == "delivered" or status.startswith("2") or (code is not None and 200 <= code < 300 and not status):
        return _result("delivered", _PolicyView("delivered", rule="success"), status, code, action)
    if diagnostic_type.strip().lower() == "x-unix" and _local_program_failed(line):
        # The local delivery program (pipe, procmail, mail.local) failed: its exit status says
        # how (sysexits.h).
        reason = patterns.LOCAL_EXIT_REASONS.get(line.strip(), "mailererror")
        return _result(reason, _PolicyView(reason, rule="diagnostic-type:x-unix"), status, code, action)

    if not command:
        # The report's other words often say what the reply answered ("in reply to RCPT TO").
        command = next((found for extra in context if (found := smtp_text.find_command(extra))), "")
    policy = _policy_view(line, status, code, command, action, context, recipient)
    collapsed_context = tuple(smtp_text.join_continuations(smtp_text.collapse(extra)) for extra in context)
    reason, reason_rule = naming.reference_reason(
        naming.Evidence(
            status=field_status,
            text=line,
            context=collapsed_context,
            command=command,
            action=action,
            remote_host=remote_host,
            recipient=recipient,
            family=family,
            vendor_category=vendor_category,
            code=code,
            prose_only=prose_only,
            provider_rule=policy.rule if policy.names_as else "",
            provider_name=policy.names_as,
        )
    )
    return _result(reason, policy, status, code, action, reason_rule)


def classify_reply(code: int, status: str, text: str, command: str = "", remote_host: str = "") -> Classification:
    """Classify a synchronous SMTP reply, e.g. ``classify_reply(421, "4.7.0", "[TSS04] ...")``.

    ``status`` may be "" (it is then looked for in ``text``); ``command`` is the SMTP command
    the reply answered and ``remote_host`` the MX that gave it, when the caller knows them.
    Both only change the name: a "550 User unknown" is ``userunknown`` in answer to RCPT TO but
    ``filtered`` when nothing says when it came, as in the labelled corpus.
    """
    return classify(code=code, status=status, text=text, command=command, remote_host=remote_host)
