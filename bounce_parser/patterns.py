"""The classifier's knowledge, kept as data: provider rules, enhanced status codes, wordings.

Three tables, consulted in this order by ``classifier``:

``PROVIDER_RULES``  replies of the large mailbox providers whose meaning for a warm-up is known
                    precisely (shared/reference/isp-replies.md): rate limits, blocks,
                    authentication demands.  They win over everything else for ``kind``; their
                    ``names_as`` gives the taxonomy name the labels use (``naming``).
``STATUS_REASONS``  what an enhanced status code (RFC 3463 and the IANA registry) means when the
                    text says nothing more specific.
``REASON_PHRASES``  wordings that servers use for each reason, in precedence order (kept in
                    ``wordings``, re-exported here).

All patterns are matched case-insensitively against the diagnostic collapsed to one line.
Operators' additions belong here, not in code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .wordings import COMPILED_PHRASES, REASON_PHRASES


@dataclass(frozen=True, slots=True)
class ProviderRule:
    """A provider reply with a known meaning.

    ``reason`` and ``detail`` are what the reply means for a warm-up (they decide ``kind``);
    ``names_as`` is the taxonomy name the reply gets, which follows the reference labelling and
    may differ (Yahoo's TSS04 is acted on as a throttle but named ``blocked``); "" leaves the
    name to the general conventions of ``naming``.  ``statuses`` (enhanced codes) and
    ``pattern`` (a regex) are alternatives: the rule matches when the status is listed or the
    pattern is found.  ``requires``, when set, must be found as well (it narrows a status that
    providers use for several things).
    """

    name: str
    reason: str
    detail: str = ""
    statuses: tuple[str, ...] = ()
    pattern: str = ""
    requires: str = ""
    names_as: str = ""


PROVIDER_RULES: tuple[ProviderRule, ...] = (
    # Google
    ProviderRule("google-rate-limited", "toomanyconn", "speeding", statuses=("4.7.28",),
                 pattern=r"unusual rate of unsolicited mail.{0,200}rate limited", names_as="toomanyconn"),
    ProviderRule("google-unsolicited-blocked", "blocked", "badreputation", statuses=("5.7.28",),
                 pattern=r"unusual rate of unsolicited mail.{0,200}(?:has been )?blocked", names_as="blocked"),
    ProviderRule("google-recipient-rate", "toomanyconn", "speeding",
                 pattern=r"receiving mail at a rate that prevents additional messages", names_as="toomanyconn"),
    # Acted on as a throttle; the labels name Google's generic refusal a block of the sender.
    ProviderRule("google-try-again-later", "toomanyconn", "speeding",
                 pattern=r"try again later, closing connection", names_as="blocked"),
    ProviderRule("google-unauthenticated", "securityerror", "authfailure",
                 statuses=("5.7.26", "4.7.26", "5.7.27", "4.7.27", "5.7.30", "4.7.30", "5.7.32", "4.7.32"),
                 pattern=r"sender is unauthenticated|unauthenticated email from"),
    ProviderRule("google-no-ptr", "blocked", "requireptr", statuses=("5.7.25", "4.7.25"),
                 pattern=r"does not have a ptr record|ptr record setup", names_as="blocked"),
    ProviderRule("google-likely-unsolicited", "spamdetected", pattern=r"likely unsolicited mail"),
    ProviderRule("google-low-reputation", "blocked", "badreputation",
                 pattern=r"likely suspicious due to the very low reputation", names_as="blocked"),
    # Yahoo / AOL
    # TSS04 defers on volume or complaints: a throttle to act on, named a block by the labels
    # (and a refused sender when qmail reports it as such: left to ``naming``).
    ProviderRule("yahoo-tss04-deferred", "toomanyconn", "speeding", pattern=r"\[?tss04\]?"),
    ProviderRule("yahoo-tss09-deferred", "blocked", "badreputation", pattern=r"\[?tss09\]?", names_as="blocked"),
    ProviderRule("yahoo-blocklisted", "blocked", "badreputation", pattern=r"\[?bl2[123]\]?", names_as="blocked"),
    ProviderRule("yahoo-dmarc", "securityerror", "authfailure", statuses=("5.7.9",), requires=r"dmarc"),
    ProviderRule("yahoo-policy", "policyviolation", statuses=("5.7.9", "4.7.9"),
                 requires=r"not accepted for policy reasons"),
    # "This user doesn't have an account" names a missing mailbox whatever command it answered
    # (Yahoo sends it after DATA too), so the name does not follow the unknown-user-after-DATA rule.
    ProviderRule("yahoo-no-account", "userunknown",
                 pattern=r"dd this user doesn't have a [a-z0-9.-]+ account", names_as="userunknown"),
    # Microsoft
    # A rate limit "due to IP reputation": acted on as a throttle, named a block by the labels.
    ProviderRule("microsoft-rate-limited", "toomanyconn", "speeding", statuses=("4.7.650", "5.7.650"),
                 pattern=r"temporarily rate limited due to ip reputation", names_as="blocked"),
    ProviderRule("microsoft-server-busy", "toomanyconn", "speeding", statuses=("4.7.500",),
                 pattern=r"server busy\. please try again later", names_as="systemerror"),
    ProviderRule("microsoft-rp-throttle", "toomanyconn", "speeding", pattern=r"\brp-00[123]\b",
                 names_as="toomanyconn"),
    ProviderRule("microsoft-block-list", "blocked", "badreputation", statuses=("5.7.511", "5.7.606"),
                 pattern=r"\(s3150\)|\(s3140\)|\bs31[45]0\b|banned sending ip|access denied, banned sender",
                 names_as="blocked"),
    ProviderRule("microsoft-sc-policy", "blocked", "badreputation", pattern=r"\bsc-00[124]\b", names_as="blocked"),
    ProviderRule("microsoft-auth-level", "securityerror", "authfailure", statuses=("5.7.515",),
                 pattern=r"does not meet the required authentication level"),
    # Exchange's own codes name the cause whichever MTA relays them.
    ProviderRule("microsoft-recipient-not-found", "userunknown",
                 pattern=r"resolver\.adr\.recip(?:ient)?notfound", names_as="userunknown"),
    ProviderRule("microsoft-mailbox-unavailable", "userunknown", statuses=("5.5.0",),
                 requires=r"requested action not taken: mailbox unavailable", names_as="userunknown"),
    ProviderRule("microsoft-recipient-size", "mesgtoobig", pattern=r"resolver\.rst\.recipsizelimit",
                 names_as="mesgtoobig"),
    ProviderRule("microsoft-expired", "expired", statuses=("5.4.316", "4.4.316"),
                 pattern=r"message expired|delivery time expired", names_as="expired"),
    # Spectrum (Charter) numbers its refusals (AUP#NNNN, see naming_rules.SPECTRUM_CODES): 1300-1490
    # are connection and message rate limits, 1000 and 1100-1250 refusals of the sending IP.
    ProviderRule("spectrum-rate-limit", "toomanyconn", "speeding", pattern=r"\baup#(?:in-|out-)?1[34]\d0\b"),
    ProviderRule("spectrum-ip-refused", "blocked", "badreputation",
                 pattern=r"\baup#(?:in-|out-)?1(?:000|1[0-5]0|2[0-5]0)\b"),
    # Orange (France) documents ofr_506 as its spam rejection.
    ProviderRule("orange-spam", "spamdetected", pattern=r"\bofr_506\b"),
)

# Enhanced status -> reason, for codes specific enough to decide on their own.  Keys are the
# subject.detail part ("1.1") when the class (4 or 5) does not change the meaning, or the whole
# code when it does.  Codes missing here (x.0.0, x.3.0, x.4.0, x.5.0, x.7.0, x.7.1 ...) are too
# generic to say anything.
STATUS_REASONS: dict[str, str] = {
    "1.0": "userunknown",
    "1.1": "userunknown",
    "1.2": "hostunknown",
    "1.3": "userunknown",
    "1.4": "userunknown",
    "1.6": "hasmoved",
    "1.7": "rejected",
    "1.8": "rejected",
    "1.10": "notaccept",
    "2.0": "filtered",
    "2.1": "suspend",
    "2.2": "mailboxfull",
    "2.3": "exceedlimit",
    "2.4": "systemerror",
    "3.1": "systemfull",
    "3.2": "notaccept",
    "3.3": "systemerror",
    "3.4": "mesgtoobig",
    "3.5": "systemerror",
    "4.4.1": "expired",  # no answer from host: only a temporary report means "kept trying"
    "4.2": "networkerror",
    "4.3": "systemerror",
    "4.4": "hostunknown",
    "4.5": "toomanyconn",
    "4.6": "networkerror",
    "4.7": "expired",
    "5.1": "syntaxerror",
    "5.2": "syntaxerror",
    "5.3": "toomanyconn",
    "5.4": "syntaxerror",
    "5.5": "systemerror",
    "6.0": "contenterror",
    "6.1": "contenterror",
    "6.2": "contenterror",
    "6.3": "contenterror",
    "6.4": "contenterror",
    "6.5": "contenterror",
    "6.6": "contenterror",
    "6.7": "contenterror",
    "6.8": "contenterror",
    "6.9": "contenterror",
    "6.10": "contenterror",
    "7.2": "policyviolation",
    "7.3": "securityerror",
    "7.4": "securityerror",
    "7.5": "securityerror",
    "7.6": "securityerror",
    "7.7": "securityerror",
    "7.8": "securityerror",
    "7.9": "securityerror",
    "7.10": "securityerror",
    "7.11": "securityerror",
    "7.12": "securityerror",
    "7.13": "suspend",
    "7.14": "securityerror",
    "7.17": "hasmoved",
    "7.18": "hasmoved",
    "7.20": "securityerror",
    "7.21": "securityerror",
    "7.22": "securityerror",
    "7.23": "securityerror",
    "7.24": "securityerror",
    "7.25": "blocked",
    "7.26": "securityerror",
    "7.27": "rejected",
    "7.28": "blocked",
    "7.29": "securityerror",
    "7.30": "securityerror",
}

# Finer names implied by a status code alone.
STATUS_DETAILS: dict[str, str] = {
    "7.25": "requireptr",
    "7.26": "authfailure",
    "7.28": "badreputation",
}

# Bounces that carry no reason per recipient but come from a service whose refusals all mean
# one thing: a Google Groups bounce says the group does not exist or the sender may not post.
RECIPIENT_DOMAIN_REASONS: dict[str, str] = {
    "googlegroups.com": "rejected",
}

# Exit status of a local delivery program (sysexits.h), reported as "Diagnostic-Code: X-Unix; 67".
LOCAL_EXIT_REASONS: dict[str, str] = {
    "67": "userunknown",  # EX_NOUSER
    "68": "hostunknown",  # EX_NOHOST
    "70": "systemerror",  # EX_SOFTWARE
    "72": "systemerror",  # EX_OSFILE
    "73": "systemerror",  # EX_CANTCREAT
    "74": "systemerror",  # EX_IOERR
    "77": "systemerror",  # EX_NOPERM
    "78": "systemerror",  # EX_CONFIG
}

@dataclass(frozen=True, slots=True)
class CompiledProviderRule:
    rule: ProviderRule
    pattern: re.Pattern[str] | None
    requires: re.Pattern[str] | None


COMPILED_PROVIDER_RULES: tuple[CompiledProviderRule, ...] = tuple(
    CompiledProviderRule(
        rule,
        re.compile(rule.pattern, re.IGNORECASE) if rule.pattern else None,
        re.compile(rule.requires, re.IGNORECASE) if rule.requires else None,
    )
    for rule in PROVIDER_RULES
)

__all__ = [
    "COMPILED_PHRASES",
    "COMPILED_PROVIDER_RULES",
    "LOCAL_EXIT_REASONS",
    "PROVIDER_RULES",
    "REASON_PHRASES",
    "RECIPIENT_DOMAIN_REASONS",
    "STATUS_DETAILS",
    "STATUS_REASONS",
    "ProviderRule",
]
