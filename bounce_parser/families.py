"""Which mail system wrote a bounce, and what that system's own statements mean.

Most bounces relay a remote server's reply, and the reply alone is named (``naming``).  Some
systems instead state a verdict of their own - a mail gateway or groupware server that looked
the address up in its own directory, or a sending platform that files every failure under a
category - and the reference labelling takes those statements at their word.  The signatures
below recognise such systems from the marks they leave (headers, fixed phrases); nothing here
depends on a particular message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Signature:
    """``family`` wrote the bounce when ``pattern`` is found in the named place.

    ``where`` is a header name (lower-case), ``subject``, ``from`` or ``body``.
    """

    family: str
    where: str
    pattern: str


SIGNATURES: tuple[Signature, ...] = (
    Signature("mcafee", "x-nai-header", r"mcafee"),
    Signature("lotus-notes", "body", r"^-+\s*failure reasons\s*-+\s*$"),
    Signature("lotus-domino", "subject", r"^delivery failure:"),
    Signature("exchange-ims", "x-ms-embedded-report", r"^"),
    Signature("exchange-ims", "x-mailer", r"^internet mail service \(5\."),
    Signature("exchange-ims", "body", r"\bMSEXCH:IMS:"),
    Signature("imail", "x-mailer", r"^<smtp32 v"),
    Signature("interscan", "body", r"message from interscan messaging security suite"),
    Signature("interscan", "from", r"interscan mss"),
    Signature("google", "from", r"mailer-daemon@(?:googlemail|gmail)\.com"),
    Signature("messagelabs", "from", r"@messagelabs\.com"),
    Signature("messagelabs", "x-msg-ref", r"\.messagelabs\.com!"),
    Signature("hotmail", "from", r"postmaster@(?:[\w-]+\.)*(?:hotmail|outlook|live)\."),
    # Amazon SES receiving (inbound) rejections, known by the reporting host of their DSN.
    Signature("ses-inbound", "reporting-mta", r"inbound-smtp\.[a-z0-9-]+\.amazonaws\.com"),
    # Dovecot's LDA/LMTP rejects with its own sentence above the report.
    Signature("dovecot", "body", r"^your message to <[^>\n]*> was automatically rejected:"),
)

# Systems whose own "no such user" is a verdict on the address, given in answer to the
# recipient (their directory said so), whatever the report says about the SMTP command.
OWN_ADDRESS_VERDICT = frozenset(
    {"mcafee", "lotus-notes", "lotus-domino", "exchange-ims", "imail", "interscan", "google", "messagelabs", "hotmail"}
)

# A system's fixed wording for a recipient it could not reach -> the reason it means.
FAMILY_WORDINGS: dict[str, tuple[tuple[str, str], ...]] = {
    # InterScan only says it could not deliver to the recipient's domain's server for the address.
    "interscan": ((r"unable to deliver message to <?[^>\s]+>? \(and other recipients", "userunknown"),),
    # SES receiving answers with fixed texts chosen by the receiving account's rules: "mailbox
    # does not exist" is such a rule refusing the address, not a directory lookup.
    "ses-inbound": ((r"mailbox does not exist", "filtered"), (r"message content rejected", "contenterror")),
}

# Systems that state the reason in their own sentence, which outranks the report fields they
# fill with a generic reply; the first group of the pattern is that statement.
OWN_STATEMENTS: dict[str, str] = {
    "dovecot": r"^your message to <[^>\n]*> was automatically rejected:\s*\n?(.{1,300})",
}

# PowerMTA files every bounce under a category (X-PowerMTA-BounceCategory) -> reason.
VENDOR_CATEGORIES: dict[str, str] = {
    "bad-mailbox": "userunknown",
    "bad-domain": "hostunknown",
    "inactive-mailbox": "suspend",
    "quota-issues": "mailboxfull",
    "spam-related": "spamdetected",
    "policy-related": "policyviolation",
    "message-expired": "expired",
    "no-answer-from-host": "networkerror",
    "routing-errors": "systemerror",
}

_MAX_CHARS = 20000
_COMPILED = tuple(
    (signature, re.compile(signature.pattern, re.IGNORECASE | re.MULTILINE)) for signature in SIGNATURES
)
_COMPILED_WORDINGS = {
    family: tuple((re.compile(pattern, re.IGNORECASE), reason) for pattern, reason in wordings)
    for family, wordings in FAMILY_WORDINGS.items()
}


_COMPILED_STATEMENTS = {
    family: re.compile(pattern, re.IGNORECASE | re.MULTILINE) for family, pattern in OWN_STATEMENTS.items()
}


def detect(headers: dict[str, str], subject: str, sender: str, body: str) -> str:
    """The family that wrote the bounce, or "" when it is none of the known ones.

    ``headers`` are the bounce's own headers, or a delivery-status report's per-message fields.
    """
    places = {"subject": subject, "from": sender, "body": body}
    for signature, pattern in _COMPILED:
        value = places.get(signature.where)
        if value is None:
            value = headers.get(signature.where)
        if value is not None and pattern.search(value[:_MAX_CHARS]):
            return signature.family
    return ""


def own_statement(family: str, body: str) -> str:
    """The reason a system wrote in its own words (``OWN_STATEMENTS``), or ""."""
    pattern = _COMPILED_STATEMENTS.get(family)
    if pattern is None:
        return ""
    found = pattern.search(body[:_MAX_CHARS])
    return found.group(1).strip() if found else ""


def gives_own_address_verdict(family: str) -> bool:
    return family in OWN_ADDRESS_VERDICT


def vendor_reason(family: str, category: str, text: str) -> str:
    """The reason a system's own classification or fixed wording states, or ""."""
    reason = VENDOR_CATEGORIES.get(category.strip().lower(), "")
    if reason:
        return reason
    for pattern, meant in _COMPILED_WORDINGS.get(family, ()):
        if pattern.search(text):
            return meant
    return ""
