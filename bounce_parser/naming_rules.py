"""Data for ``naming``: how the reference labelling names an outcome.

The product's ``reason`` is the name the shared taxonomy (Sisimai's names, see
shared/corpus/bounces/README.md) gives a failure.  That labelling has conventions of its own
that differ from what the policy daemon needs to know (``kind`` and ``detail`` carry that):
it reads some enhanced status codes differently from RFC 3463, it only calls an address
unknown when the status or the SMTP command says the reply was about the address, and it
names a few providers' replies by the provider's own published meaning.  These tables hold
those conventions, learnt from the labelled corpus and from observing the labelling tool on
synthetic messages; ``naming`` applies them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Enhanced status -> reason in the labelling's reading.  Keys are the whole code when the class
# (4 or 5) changes the meaning, else the subject.detail part.  Codes not listed say nothing on
# their own (the class fallbacks in ``naming`` apply: x.6.x content, x.7.x security).
STATUS_NAMES: dict[str, str] = {
    "1.6": "hasmoved",
    "1.7": "rejected",
    "1.8": "rejected",
    "1.9": "systemerror",
    "2.2": "mailboxfull",
    "2.3": "exceedlimit",
    "2.4": "filtered",
    "3.1": "systemfull",
    "3.2": "notaccept",
    "3.3": "systemerror",
    "3.5": "systemerror",
    "7.25": "blocked",
    # Permanent codes
    "5.1.0": "userunknown",
    "5.1.1": "userunknown",
    "5.1.2": "hostunknown",
    "5.1.3": "userunknown",
    "5.1.4": "filtered",
    "5.1.10": "notaccept",
    "5.2.0": "filtered",  # "other mailbox status": a mailbox that refuses this mail
    "5.2.1": "filtered",  # "mailbox disabled, not accepting messages"
    "5.3.0": "systemerror",
    "5.3.4": "mesgtoobig",
    "5.4.0": "networkerror",
    "5.4.3": "systemerror",
    "5.5.3": "toomanyconn",
    "5.5.4": "systemerror",
    "5.5.5": "systemerror",
    "5.7.13": "suspend",
    "5.7.17": "hasmoved",
    "5.7.18": "hasmoved",
    "5.7.27": "notaccept",
    # Temporary codes
    "4.2.1": "suspend",
    "4.4.1": "expired",
    "4.4.2": "networkerror",
    "4.4.4": "networkerror",
    "4.4.5": "systemfull",
    "4.4.6": "networkerror",
    "4.4.7": "expired",
    "4.5.3": "systemerror",
    "4.5.5": "systemerror",
    "4.7.1": "blocked",
    "4.7.2": "blocked",
}

# Names that only count when no wording said anything: "unable to route" follows from a DNS
# failure as often as from a missing domain.
WEAK_STATUS_NAMES: dict[str, str] = {
    "5.4.4": "hostunknown",
}

# Reasons about the mailbox, the address or the sending host, in the order the labelling
# settles them: the first whose status name or wording applies wins, before any other wording
# (a "5.2.2 ... user unknown" is a full mailbox, a "5.1.1 ... spam" an unknown user).
ADDRESS_FIRST: tuple[str, ...] = (
    "mailboxfull",
    "mesgtoobig",
    "exceedlimit",
    "suspend",
    "hasmoved",
    "norelaying",
    "userunknown",
    "filtered",
    "rejected",
    "hostunknown",
    "virusdetected",  # more specific than any spam or content verdict given with it
    "spamdetected",
    "toomanyconn",
    "blocked",
)

# Wordings that only count in the first pass, where the status and the command qualify them
# (a "user unknown" in answer to MAIL FROM says nothing about the recipient).
QUALIFIED_ONLY = frozenset({"userunknown", "filtered"})

# Commands sent before the message itself: a reply to one of them cannot have judged the content.
BEFORE_CONTENT = frozenset({"CONN", "HELO", "MAIL", "RCPT"})

# A status of the "user unknown" kind is not trusted when the words say one of these instead.
NOT_AN_UNKNOWN_USER = frozenset({"norelaying", "blocked", "mailboxfull", "hasmoved", "notaccept"})


@dataclass(frozen=True, slots=True)
class Rename:
    """Words that the labelling files under another reason than the product's wording table."""

    name: str
    reason: str
    pattern: str
    replaces: frozenset[str]


# Checked against the diagnostic; each one found moves its words from ``replaces`` to ``reason``.
RENAMES: tuple[Rename, ...] = (
    # A rejection under the recipient domain's DMARC policy is a site policy in the labels' view;
    # the policy daemon still counts it as an authentication failure (kind "auth").
    Rename("dmarc-policy", "policyviolation", r"\bdmarc policy|dmarc\)? policy|per dmarc",
           frozenset({"securityerror"})),
    # Yahoo's TSS04 deferral (volume or complaints) is a block of the IP in the labels' view; the
    # policy daemon treats it as a throttle (kind "throttled").
    Rename("yahoo-deferred-volume", "blocked", r"temporarily deferred due to unexpected volume or user complaints",
           frozenset({"toomanyconn"})),
    # An SPF record the receiver cannot use is a refusal of the sending host.
    Rename("bad-spf-records", "blocked", r"bad spf records", frozenset({"securityerror"})),
    # A header the receiver refuses is a site policy, not a malformed message.
    Rename("header-error", "policyviolation", r"\bheader error\b", frozenset({"contenterror"})),
    # Gmail's DMARC refusal, also when a relay kept only its first line.
    Rename("gmail-dmarc", "policyviolation", r"unauthenticated email from \S+ is not accepted due to",
           frozenset({"securityerror"})),
    # Relaying refused until the client authenticates is a demand to authenticate.
    Rename("relay-needs-auth", "securityerror",
           r"relay\w* .{0,60}without authentication|turn on smtp auth", frozenset({"norelaying"})),
    # qmail says plainly when the envelope sender was what the remote host refused.
    Rename("qmail-sender-rejected", "rejected", r"\bbut sender was rejected\b",
           frozenset({"toomanyconn", "blocked", "securityerror", "policyviolation"})),
)


@dataclass(frozen=True, slots=True)
class HostRule:
    """A provider's reply named by the provider's published meaning of it.

    ``hosts`` is matched against the host that answered; the rule applies when one of
    ``statuses`` is the reply's status or ``pattern`` is found in its text, and, if
    ``commands`` is set, the reply answered one of them.
    """

    name: str
    reason: str
    hosts: str
    pattern: str = ""
    statuses: tuple[str, ...] = ()
    commands: tuple[str, ...] = ()


GOOGLE_HOSTS = r"(?:^|\.)(?:google|googlemail|gmail)\.com$"
MICROSOFT_HOSTS = r"(?:^|\.)(?:outlook\.com|hotmail\.com|live\.com|msn\.com)$"
TENCENT_HOSTS = r"(?:^|\.)qq\.com$"
DOCOMO_HOSTS = r"(?:^|\.)docomo\.ne\.jp$"

HOST_RULES: tuple[HostRule, ...] = (
    # Google (https://support.google.com/a/answer/3726730): authentication and reputation refusals
    # are blocks of the sender, per-recipient and daily rates are rate limits.
    HostRule("google-auth-refused", "blocked", GOOGLE_HOSTS,
             pattern=r"unauthenticated email .{0,80}dmarc policy|does not have authentication information"
                     r"|fails to pass authentication checks"),
    HostRule("google-reputation", "blocked", GOOGLE_HOSTS,
             pattern=r"very low reputation|ip not in whitelist|not authorized to send email directly"
                     r"|has been temporarily blocked|try again later, closing connection"),
    HostRule("google-rate", "toomanyconn", GOOGLE_HOSTS,
             pattern=r"receiving mail at a rate that|daily sending quota exceeded"),
    HostRule("google-policy", "policyviolation", GOOGLE_HOSTS, pattern=r"has a policy that prohibited the mail"),
    HostRule("google-busy", "systemerror", GOOGLE_HOSTS,
             pattern=r"mail server temporarily rejected message|server busy, try again later"),
    # Microsoft: the IP reputation rate limit and banned senders are blocks of the source IP.
    HostRule("microsoft-ip-reputation", "blocked", MICROSOFT_HOSTS, statuses=("4.7.650", "5.7.650", "5.7.511"),
             pattern=r"rate limited due to ip reputation|banned sender"),
    HostRule("microsoft-busy", "systemerror", MICROSOFT_HOSTS, statuses=("4.7.500",)),
    # Tencent refuses mail failing DMARC as a block of the sender.
    HostRule("tencent-dmarc", "blocked", TENCENT_HOSTS, pattern=r"dmarc check failed"),
    # NTT docomo accepts every known address at RCPT TO; a plain 550 after the message is the
    # recipient's own sender filter refusing this sender.
    HostRule("docomo-sender-filter", "rejected", DOCOMO_HOSTS, statuses=("", "5.0.0"), commands=("DATA",)),
)

# Orange and La Poste (France) end their refusals with a code such as "OFR005_505" or
# "LPN007_416"; the number after the underscore is documented by the postmaster pages.
ORANGE_CODE = re.compile(r"\b(?:OFR|LPN)\d{0,3}_(\d{3})\b", re.IGNORECASE)
ORANGE_CODES: dict[int, str] = {
    101: "blocked", 102: "blocked", 103: "blocked",  # the sending IP is refused
    104: "toomanyconn",  # too many connections or messages
    305: "securityerror",
    401: "blocked",
    402: "securityerror",
    403: "rejected", 405: "rejected", 415: "rejected", 421: "rejected",  # the sender's address or domain
    416: "userunknown", 418: "userunknown",
    417: "mailboxfull",
    420: "suspend", 426: "suspend",
    505: "systemerror",
    506: "spamdetected",
    510: "blocked",
    514: "mesgtoobig",
    517: "policyviolation", 630: "policyviolation",
    999: "blocked",
}

# Spectrum (Charter) names its refusals "AUP#[In-|Out-]NNNN" and documents each number
# (https://www.spectrum.net/support/internet/understanding-email-error-codes); ranges below are
# (first, last, reason).
# Facebook's replies carry a code documented at postmaster.facebook.com/response_codes.
FACEBOOK_CODE = re.compile(r"\b((?:RCP|MBX|CNT|POL|DNS|SPM|INT)-[PT]\d)\b.{0,80}facebook|facebook.{0,120}?"
                           r"\b((?:RCP|MBX|CNT|POL|DNS|SPM|INT)-[PT]\d)\b", re.IGNORECASE)
FACEBOOK_CODES: dict[str, str] = {
    "RCP-P1": "userunknown",  # the address does not exist
    "RCP-P2": "filtered",  # the recipient's preferences refuse the message
    "RCP-P3": "filtered",  # the recipient's privacy settings
    "RCP-T1": "systemerror",
    "RCP-T4": "suspend",
    "INT-P1": "userunknown", "INT-P3": "userunknown", "INT-P4": "userunknown",
    "INT-P2": "mesgtoobig",
    "INT-T1": "systemerror", "INT-T2": "systemerror", "INT-T3": "systemerror", "INT-T4": "systemerror",
    "DNS-P1": "rejected", "DNS-P2": "rejected", "DNS-P3": "rejected", "DNS-T1": "rejected", "DNS-T2": "rejected",
    "POL-P1": "blocked", "POL-P2": "blocked",  # the sending IP is listed or refused
    "POL-P3": "notaccept", "POL-P4": "notaccept", "POL-T1": "notaccept", "POL-T2": "notaccept",
    "POL-T3": "notaccept",
    "POL-P5": "virusdetected",
    "POL-P6": "contenterror",
    "POL-P7": "securityerror",
}

SPECTRUM_HOSTS = r"(?:^|\.)(?:charter\.net|spectrum\.net|rr\.com|twc\.com|brighthouse\.com|bresnan\.net)$"
SPECTRUM_CODE = re.compile(r"\bAUP#(?:In-|Out-)?(\d{4})\b", re.IGNORECASE)
SPECTRUM_CODES: tuple[tuple[int, int, str], ...] = (
    (1000, 1000, "blocked"),  # the sending IP is on a block list
    (1010, 1080, "rejected"),  # the sender's domain or address
    (1090, 1090, "systemerror"),
    (1100, 1150, "blocked"),  # reverse DNS, reputation
    (1160, 1190, "policyviolation"),
    (1200, 1250, "blocked"),
    (1260, 1260, "networkerror"),  # IPv6 not accepted
    (1270, 1290, "userunknown"),
    (1300, 1490, "toomanyconn"),  # connection, recipient and message rate limits
    (1500, 1500, "rejected"),
    (1510, 1510, "userunknown"),
    (1520, 1520, "rejected"),
    (1530, 1530, "mesgtoobig"),
    (1540, 1550, "toomanyconn"),
    (1560, 1560, "policyviolation"),
    (1570, 9999, "userunknown"),
)


@dataclass(frozen=True, slots=True)
class CompiledHostRule:
    rule: HostRule
    hosts: re.Pattern[str]
    pattern: re.Pattern[str] | None


COMPILED_HOST_RULES: tuple[CompiledHostRule, ...] = tuple(
    CompiledHostRule(rule, re.compile(rule.hosts, re.IGNORECASE),
                     re.compile(rule.pattern, re.IGNORECASE) if rule.pattern else None)
    for rule in HOST_RULES
)
COMPILED_RENAMES: tuple[tuple[Rename, re.Pattern[str]], ...] = tuple(
    (rename, re.compile(rename.pattern, re.IGNORECASE)) for rename in RENAMES
)
SPECTRUM_HOSTS_RE = re.compile(SPECTRUM_HOSTS, re.IGNORECASE)
