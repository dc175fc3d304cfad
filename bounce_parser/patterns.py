"""The classifier's knowledge, kept as data: provider rules, enhanced status codes, wordings.

Three tables, consulted in this order by ``classifier``:

``PROVIDER_RULES``  replies of the large mailbox providers whose meaning for a warm-up is known
                    precisely (shared/reference/isp-replies.md): rate limits, blocks,
                    authentication demands.  They win over everything else for ``kind``; their
                    ``names_as`` gives the taxonomy name the labels use (``naming``).
``STATUS_REASONS``  what an enhanced status code (RFC 3463 and the IANA registry) means when the
                    text says nothing more specific.
``REASON_PHRASES``  wordings that servers use for each reason, in precedence order: when a text
                    matches several reasons, the earlier one wins (a "mailbox full" rejection
                    worded "Recipient address rejected: mailbox full" is about the mailbox).

All patterns are matched case-insensitively against the diagnostic collapsed to one line.
Operators' additions belong here, not in code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


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

# reason -> wordings, in precedence order (see the module docstring).
REASON_PHRASES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("virusdetected", (
        r"\bvirus\b(?!-)", r"malware", r"\binfected\b", r"trojan", r"\bworm\b detected",
    )),
    ("securityerror", (
        r"authentication (?:is )?required", r"smtp auth", r"turn on smtp authentication",
        r"must issue a starttls", r"tls (?:is )?required", r"encryption (?:is )?required",
        r"unauthenticated e-?mail", r"\bdmarc\b", r"authentication checks",
        r"\bspf\b.{0,30}(?:fail|check|record|validation|reject|error)", r"(?:fail\w*|bad|invalid|no)\s+spf",
        r"\bdkim\b.{0,30}(?:fail|invalid|verif|check|missing|required)", r"(?:fail\w*|no valid|invalid|missing)\s+dkim",
        r"authentication (?:failed|failure)", r"not authenticated",
    )),
    ("norelaying", (
        r"relay(?:ing)? (?:access )?(?:denied|not permitted|prohibited|not allowed|refused)",
        r"(?:unable|not permitted|not allowed|we do not|cannot) (?:to )?relay",
        r"no relaying", r"relay not permitted", r"not a gateway",
    )),
    ("mailboxfull", (
        r"mailbox (?:is )?(?:full|over ?quota)", r"mailbox full", r"over ?quota", r"quota exceeded",
        r"exceeded (?:its |the |his |her )?(?:storage|mailbox|disk) (?:quota|allocation|limit)",
        r"mailbox (?:size )?limit (?:exceeded|reached)", r"not enough (?:disk )?(?:space|storage)",
        r"out of storage space", r"mail ?folder is full", r"inbox is full", r"storage quota",
        r"number of messages in recipient's mailbox exceeded", r"too much mail data",
        r"mailbox (?:has )?exceeded", r"disk quota", r"user(?:'s)? (?:mailbox|mail box) is full",
        r"insufficient (?:user )?storage", r"exceeds? (?:the )?(?:user'?s? )?quota",
    )),
    ("mesgtoobig", (
        r"message (?:is )?too (?:big|large)", r"message size exceeds", r"mail size limit",
        r"size limit exceeded", r"message (?:length|size) (?:exceeds|is over|limit)",
        r"message is larger than", r"exceeds? (?:the )?(?:maximum )?(?:message )?size limit",
        r"too big for (?:the|this) (?:host|system)", r"line limit exceeded",
    )),
    ("suspend", (
        r"account (?:is |has been )?(?:disabled|suspended|deactivated|locked|frozen|inactive)",
        r"(?:mailbox|address|recipient|user) (?:is |has been )?(?:disabled|suspended|frozen|deactivated|locked)",
        r"is disabled", r"account has been (?:closed|discontinued)", r"disabled or discontinued",
        r"mailbox is frozen", r"user account is (?:expired|unavailable)", r"disabled recipient",
    )),
    ("notaccept", (
        r"does not accept (?:any )?mail", r"accepts? no mail", r"null mx",
        r"indicated no smtp service", r"doesn't receive e-?mail", r"does not receive e-?mail",
        r"no mx record found", r"not accepting (?:any )?mail",
    )),
    ("hostunknown", (
        r"host unknown", r"unknown host", r"host not found", r"no such domain",
        r"domain (?:does not|doesn't) exist", r"unrouteable address", r"illegal host/domain",
        r"invalid domain\b", r"domain is not reachable", r"name or service not known",
        r"(?<![@\w.-])[a-z0-9-]+(?:\.[a-z0-9-]+)+ does not exist",
        r"recipient domain (?:does not exist|not found)", r"unknown domain",
    )),
    ("networkerror", (
        r"name service error", r"host name lookup failure", r"no route to host",
        # A refused TCP connection is a host that is down or closed, not a block of our IP:
        # reading it as a block would pause warm-up for a server's outage.
        r"network is unreachable", r"lost connection", r"connection reset", r"connection refused",
        r"too many hops",
        r"hop count exceeded", r"routing loop", r"mail loop", r"loop detected", r"loops back to myself",
        r"name server reply", r"temporary lookup failure", r"nxdomain", r"no mx found",
        r"(?<!reverse )dns (?:error|lookup|failure)",
    )),
    ("userunknown", (
        r"user unknown", r"unknown user", r"user not found", r"no such user",
        r"no such (?:recipient|mailbox|address|account|person)", r"mailbox (?:not found|unavailable)",
        r"user doesn't have a .{1,64} account", r"unknown recipient", r"no mailbox here",
        r"mailbox (?:does not|doesn't) exist", r"recipient not found",
        r"recip(?:ient)?notfound", r"address not found", r"invalid recipient",
        r"(?:user|account|mailbox|recipient|address|addressee) (?:does not|doesn't|did not) exist",
        r"(?:e-?mail )?account that you tried to reach does not exist",
        r"not a valid (?:mailbox|user|recipient|address)", r"invalid (?:mailbox|address|user)\b",
        r"unknown (?:local[- ]part|address|mailbox|alias)",
        r"user not exist", r"not listed in", r"is not recognized", r"inactive e-?mail address",
        r"invalid final delivery userid", r"unknown or illegal alias", r"no account by that name",
        r"bad destination mailbox", r"recipient (?:does not|doesn't) exist", r"user(?:name)? is unknown",
        r"no such local user", r"not our customer", r"address unknown", r"undeliverable address",
        r"destination (?:address|mailbox) (?:unknown|invalid)", r"adresse destinataire invalide",
        r"ディレクトリ", r"存在しません",
    )),
    ("toomanyconn", (
        r"too many (?:concurrent )?(?:connections|sessions|smtp sessions)", r"connection rate limit",
        r"rate limit(?:ed|ing)?\b", r"too many recipients", r"too many messages", r"throttl",
        r"exceeded the (?:rate|connection) limit", r"temporarily deferred due to unexpected volume",
        r"too many (?:errors|invalid recipients)",
    )),
    ("blocked", (
        r"blocked using", r"block ?list", r"black ?list(?:ed)? (?:ip|host|server)", r"spamhaus", r"spamcop",
        r"\bsorbs\b", r"dnsbl", r"\brbl\b", r"reverse dns", r"\bptr record", r"no ptr\b",
        r"ip name lookup failed", r"client host rejected", r"reputation",
        r"open relay", r"on our block list",
        r"(?:ip|host|client) (?:address )?(?:\S+ )?(?:is |has been )?(?:blocked|listed|banned)",
        r"client \[?[0-9.]+\]? blocked", r"dynamic ip", r"dial-?up", r"mismatches client ip",
        r"use the smtp server of your isp", r"purported responsible address",
        r"server access .{0,40}(?:forbidden|denied)",
        r"unfortunately, messages from", r"no access from mail server", r"not allowed to connect",
        r"blocked by ldap", r"\bhelo\b.{0,40}(?:rejected|invalid)", r"listed at", r"access denied\. ip",
        r"banned send(?:ing ip|er)",
    )),
    ("filtered", (
        r"recipient preferences", r"refused due to recipient", r"rejected by (?:the )?recipient'?s? filter",
        r"filtered by (?:the )?recipient", r"badrcptto",
    )),
    ("spamdetected", (
        r"\bspam\b", r"unsolicited", r"junk mail", r"message content rejected", r"bulk mail",
        r"content filter", r"mail rejete",
    )),
    ("policyviolation", (
        r"policy reasons", r"policy violation", r"denied by policy", r"rejected for policy",
        r"illegal attachment", r"attachment.{0,40}(?:not allowed|prohibited|blocked|forbidden)",
        r"multiple addresses in from", r"violates? .{0,30}polic", r"security polic",
    )),
    ("rejected", (
        r"sender (?:address )?rejected", r"domain of sender address", r"sender verify failed",
        r"unroutable sender", r"invalid sender", r"sender (?:is )?not allowed", r"mail from rejected",
        r"address (?:that )?has been blacklisted", r"sender address .{0,40}(?:invalid|unknown|refused)",
        r"sender domain .{0,40}(?:invalid|unknown|not exist)", r"bad sender", r"return path",
        r"(?:without a|no) valid sender domain",
    )),
    ("systemfull", (
        r"system (?:is )?full", r"disk (?:is )?full", r"out of disk", r"insufficient system (?:storage|resources)",
        r"file system full",
    )),
    ("systemerror", (
        r"internal (?:system |server )?error", r"system error", r"transaction failed",
        r"could not load", r"unable to contact ldap", r"local configuration error",
        r"server configuration error", r"insufficient permission", r"duplicated message-id",
        r"does not support tls",
        r"queue file write error",
    )),
    ("mailererror", (
        r"mailer error", r"procmail", r"pipe to \|", r"command died", r"operating system error",
        r"couldn't create", r"child status", r"exit(?:ed)? (?:with )?(?:status|code) \d+",
    )),
    ("expired", (
        r"message expired", r"envelope expired", r"in the queue too long", r"delivery time expired",
        r"have been failing for a long time", r"not delivered within", r"could not be delivered for",
        r"giving up", r"connection timed out", r"timed out", r"did not accept our requests to connect",
        r"cannot send message for", r"retry time(?:out)? (?:not reached|exceeded)",
        r"could not send message for past", r"unable to deliver.{0,60}after.{0,40}retries",
    )),
    ("contenterror", (
        r"content error", r"media error", r"malformed message", r"invalid message",
        r"message (?:header|content) (?:is )?invalid",
        r"8-?bit (?:data|characters) not allowed",
    )),
    ("syntaxerror", (
        r"syntax error", r"malformed address", r"command unrecognized", r"unrecognized command",
    )),
    # Postfix prefixes every recipient restriction with these words and says the real reason
    # after them, so they count only when nothing more specific was said.
    ("userunknown", (
        # A refused *sender* address is not about the recipient.
        r"recipient address rejected", r"(?<!sender )\baddress rejected",
    )),
)

COMPILED_PHRASES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (reason, re.compile("|".join(f"(?:{phrase})" for phrase in phrases), re.IGNORECASE))
    for reason, phrases in REASON_PHRASES
)


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
