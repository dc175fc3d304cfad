"""``reference_reason``: the name the shared taxonomy gives a failure, as the reference labels do.

The taxonomy's names (shared/corpus/bounces/README.md) come from Sisimai, and the product names
outcomes the way that labelling does, so that counts and rules mean the same everywhere.  What
the policy daemon must *do* about an outcome is a separate question, answered by ``kind`` and
``detail`` in ``classifier``; this module only names.  The conventions, in order:

1. a provider's reply is named by the provider's published meaning: by the host that gave it
   (``naming_rules.HOST_RULES``), by the provider's own code in it (Facebook, Orange, Spectrum),
   then by the ``names_as`` of ``patterns.PROVIDER_RULES``;
2. a vendor's own classification of the bounce, or its own verdict on an address, is trusted
   (``families``);
3. reasons about the mailbox, the address and the sending host (``ADDRESS_FIRST``) are settled
   first, each by its status name or its wording; an address is only called unknown when the
   status says so or the reply answered RCPT TO - a "user unknown" that came after the message
   was sent, or without saying when, is a recipient-side filter (``filtered``);
4. the other wordings, then the status's own name, then the status class (x.6 content,
   x.7 security);
5. what is left: ``expired`` for a delayed report, ``blocked`` when refused before any address
   was given, ``onhold`` when a failure said too little.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from . import families, patterns, smtp_text
from .naming_rules import (
    ADDRESS_FIRST,
    BEFORE_CONTENT,
    COMPILED_HOST_RULES,
    COMPILED_RENAMES,
    FACEBOOK_CODE,
    FACEBOOK_CODES,
    NOT_AN_UNKNOWN_USER,
    ORANGE_CODE,
    ORANGE_CODES,
    QUALIFIED_ONLY,
    SPECTRUM_CODE,
    SPECTRUM_CODES,
    SPECTRUM_HOSTS_RE,
    STATUS_NAMES,
    WEAK_STATUS_NAMES,
)
from .wordings import reasons_in

_ADDRESS_WORDS = frozenset({"userunknown", "filtered"})
_ABOUT_AN_ADDRESS = frozenset({"userunknown", "filtered", "hostunknown", "suspend"})
_BEFORE_ANY_ADDRESS = frozenset({"CONN", "HELO"})
# After the first pass, the remaining wordings count in the shared table's precedence order.
_WORDING_AFTER: tuple[str, ...] = tuple(
    dict.fromkeys(reason for reason, _ in patterns.REASON_PHRASES if reason not in QUALIFIED_ONLY)
)


@dataclass(frozen=True, slots=True)
class Evidence:
    """Everything the naming looks at; ``text`` and ``context`` are collapsed to one line."""

    status: str = ""
    text: str = ""
    context: Sequence[str] = ()
    command: str = ""
    action: str = ""
    remote_host: str = ""
    recipient: str = ""
    family: str = ""
    vendor_category: str = ""
    code: int | None = None
    prose_only: bool = False  # no diagnostic field: every sentence of the report may name the reason
    provider_rule: str = ""  # the provider rule the reply matched (``patterns.PROVIDER_RULES``)
    provider_name: str = ""  # and the name that rule gives it, if any


def naming_status(status: str, text: str) -> str:
    """The status the naming goes by: the first one the reply's own words give, else the report's.

    A reply's words ("550 5.7.1 ...", "(#5.7.1)") are more specific than a report's summary
    field, which many MTAs fill with 5.0.0 or copy from another recipient.  A catch-all x.y.0
    in the words does not override a field of the same class.
    """
    quoted = smtp_text.find_status(text)
    if quoted and quoted[0] in "45" and (not status or not quoted.endswith(".0") or quoted[0] != status[0]):
        return quoted
    return status or quoted


def status_name(status: str) -> str:
    """The reason the labelling reads into an enhanced status alone, or ""."""
    if not status:
        return ""
    return STATUS_NAMES.get(status) or STATUS_NAMES.get(status.partition(".")[2], "")


def wordings(text: str) -> frozenset[str]:
    """Every reason whose wording occurs in ``text``, after the labelling's renames."""
    found = reasons_in(text)
    for rename, pattern in COMPILED_RENAMES:
        if pattern.search(text):
            found = (found - rename.replaces) | {rename.reason}
    return found


def _host_reason(evidence: Evidence, status: str, text: str) -> tuple[str, str] | None:
    """A reply named by the provider that sent it (known by the host that answered)."""
    host = evidence.remote_host
    if host:
        for compiled in COMPILED_HOST_RULES:
            rule = compiled.rule
            if not compiled.hosts.search(host) or (rule.commands and evidence.command not in rule.commands):
                continue
            if status in rule.statuses or (compiled.pattern is not None and compiled.pattern.search(text)):
                return rule.reason, f"host:{rule.name}"
    return None


def _code_reason(host: str, text: str) -> tuple[str, str] | None:
    """A reply carrying a provider's own documented code (Facebook, Orange, Spectrum)."""
    facebook = FACEBOOK_CODE.search(text)
    if facebook:
        code = (facebook.group(1) or facebook.group(2)).upper()
        if code in FACEBOOK_CODES:
            return FACEBOOK_CODES[code], f"host:facebook-{code}"
    orange = ORANGE_CODE.search(text)
    if orange:
        # An Orange code outside the documented list names nothing: "undefined", not a guess.
        return ORANGE_CODES.get(int(orange.group(1)), "undefined"), f"code:orange-{orange.group(1)}"
    code = SPECTRUM_CODE.search(text)
    # Spectrum's replies cite its own page of codes, which identifies them wherever relayed.
    if code and (SPECTRUM_HOSTS_RE.search(host) or "spectrum.net" in text.lower()):
        number = int(code.group(1))
        for first, last, reason in SPECTRUM_CODES:
            if first <= number <= last:
                return reason, f"code:spectrum-aup-{number}"
    return None


def _applies(reason: str, name: str, words: frozenset[str], command: str) -> bool:
    """Does ``reason`` settle the case, given the status name, the wordings and the command?"""
    if reason == "userunknown":
        # The status is trusted unless the words name another cause; the words alone only when
        # the reply answered RCPT TO (afterwards the address had been accepted).
        return (name == reason and not words & NOT_AN_UNKNOWN_USER) or (command == "RCPT" and reason in words)
    if reason == "filtered":
        if not words & _ADDRESS_WORDS:
            return False
        return name == reason or command not in BEFORE_CONTENT
    if reason == "norelaying":
        return reason in words and command not in _BEFORE_ANY_ADDRESS
    if reason == "spamdetected":
        # Only a reply to the message itself can have judged its content.
        return reason in words and command not in BEFORE_CONTENT
    if reason == "rejected":
        # Words about the sender settle it here only in answer to MAIL FROM; otherwise a status
        # naming the address or the host comes first (they count again after the first pass).
        return name == reason or (reason in words and command == "MAIL")
    if reason == "mesgtoobig" and name == "exceedlimit":
        return False  # "message too big" with x.2.3 is the recipient's own limit
    if reason == "hostunknown":
        # A DNS failure while looking the domain up is a network error, not a missing domain;
        # a bad domain named in answer to HELO is our own host name.
        by_words = reason in words and command not in _BEFORE_ANY_ADDRESS
        return (name == reason and "networkerror" not in words) or by_words
    return name == reason or reason in words


def _from_words(words: frozenset[str], name: str, command: str, temporary: bool) -> str:
    """The reason the words (weighed with the status's name and the command) settle, or ""."""
    if temporary and "networkerror" in words:
        # "Domain not found" from a DNS error in a temporary failure: the lookup failed this
        # time, which says nothing yet about the domain.
        words -= {"hostunknown"}
    for reason in ADDRESS_FIRST:
        if _applies(reason, name, words, command):
            return reason
    if name in ADDRESS_FIRST and not (name == "userunknown" and words & NOT_AN_UNKNOWN_USER):
        return name
    if command in _BEFORE_ANY_ADDRESS and words & _ABOUT_AN_ADDRESS:
        # Refused before any address was given, words about an address can only concern the
        # sending host ("invalid domain name" in answer to HELO is about our own name).
        return "blocked"
    for reason in _WORDING_AFTER:
        if reason in words and (reason != "hostunknown" or command not in _BEFORE_ANY_ADDRESS):
            return reason
    return ""


# RFC 3463 subjects that say enough on their own when nothing more specific was said: x.6
# content, x.7 security or policy.  The "other" details of x.3 (mail system) and x.4 (network
# and routing) cover too many causes (an upstream relay's error, a refusal by the destination)
# to name one: those stay ``onhold`` unless the words or the detail decide.
_SUBJECT_REASONS = {"6": "contenterror", "7": "securityerror"}


def _by_subject(status: str) -> str:
    subject = status.split(".")[1] if status.count(".") == 2 else ""
    return _SUBJECT_REASONS.get(subject, "")


def _by_command(command: str) -> str:
    """A refusal that said nothing else is about what the refused command carried."""
    if command == "MAIL":
        return "rejected"  # the envelope sender
    if command in _BEFORE_ANY_ADDRESS:
        return "blocked"  # the connecting host: no address had been given yet
    return ""


def _own_words(evidence: Evidence) -> frozenset[str]:
    """The diagnostic's wordings; without a diagnostic field (``prose_only``) the report's own
    sentences are the diagnostic."""
    own = wordings(evidence.text) if evidence.text else frozenset()
    if evidence.prose_only:
        for candidate in evidence.context:
            if candidate:
                own |= wordings(candidate)
    return own


def _context_words(evidence: Evidence) -> frozenset[str]:
    """The first of the report's other texts that says anything (the lines about this
    recipient come before the report's general words).  Read only when needed: the report's
    whole text is the longest thing the classifier reads."""
    for candidate in evidence.context:
        if candidate:
            found = wordings(candidate)
            if found:
                return found
    return frozenset()


def reference_reason(evidence: Evidence) -> tuple[str, str]:
    """``(reason, rule)``: the taxonomy name and what decided it, in this order of evidence.

    1. a provider's documented meaning of its reply, or the reporting system's own verdict;
    2. the diagnostic's own words, weighed with the enhanced status and the command;
    3. the enhanced status's own name (subject and detail);
    4. the report's other words (its prose around the recipient), weighed the same way: they
       may describe the whole report ("giving up", a DNS failure for another domain), so the
       status of this recipient's own reply comes first;
    5. the command a refusal answered, a delayed report's "expired", then the status's
       subject (RFC 3463), then a recipient domain whose refusals all mean one thing;
    6. ``onhold`` when something was said but nothing decided, ``undefined`` when nothing was.
    """
    text = evidence.text
    status = naming_status(evidence.status, text)
    command = evidence.command
    found = _host_reason(evidence, status, text) or _code_reason(evidence.remote_host, text)
    if found is not None:
        return found
    if evidence.provider_name:
        return evidence.provider_name, f"provider:{evidence.provider_rule}"
    vendor = families.vendor_reason(evidence.family, evidence.vendor_category, text)
    if vendor:
        return vendor, f"family:{evidence.family or evidence.vendor_category}"
    if not command and families.gives_own_address_verdict(evidence.family):
        command = "RCPT"  # the system looked the address up itself: its verdict is about it
    if not status:
        status = next((quoted for extra in evidence.context if (quoted := naming_status("", extra))), "")
    temporary = status.startswith("4") or (not status and evidence.action == "delayed")
    name = status_name(status)
    reason = _from_words(_own_words(evidence), name, command, temporary)
    if reason:
        return reason, f"naming:{reason}"
    name = name or WEAK_STATUS_NAMES.get(status, "")
    if name:
        return name, f"naming-status:{status}"
    reason = "" if evidence.prose_only else _from_words(_context_words(evidence), "", command, temporary)
    if reason:
        return reason, f"naming-context:{reason}"
    return _fallback(evidence, status, command)


def _fallback(evidence: Evidence, status: str, command: str) -> tuple[str, str]:
    reason = _by_command(command)
    if reason:
        return reason, f"naming-command:{command}"
    if evidence.action == "delayed" and not status.startswith("5"):
        return "expired", "naming:delayed"  # still being retried: the queue's lifetime decides
    reason = _by_subject(status)
    if reason:
        return reason, f"naming-class:{status}"
    domain = evidence.recipient.rpartition("@")[2]
    if domain in patterns.RECIPIENT_DOMAIN_REASONS:
        # A service whose refusals all mean one thing (a Google Groups bounce).
        return patterns.RECIPIENT_DOMAIN_REASONS[domain], f"naming-domain:{domain}"
    if status or evidence.code or evidence.text.strip():
        return "onhold", "naming:onhold"
    return "undefined", "naming:undefined"
