"""How servers word each reason: families of phrasing, not any one server's sentence.

A reason is said in many ways, but the ways share a shape: a subject (the user, the mailbox,
the sending IP, the message) and a predicate (unknown, full, listed, too big).  Each family
below pairs the usual subjects with the usual predicates, so a server that words a refusal in
its own way still matches ("User [a@b] does not exist", "no mail box available for this user",
"is not a known user on this system" are one family).  A few fixed terms of art are listed as
they are (qmail's "rcpthosts", Postfix's "Recipient address rejected", block-list names).

``REASON_PHRASES`` is in precedence order: when a text matches several reasons, the earlier
wins (a "mailbox full" refusal worded "Recipient address rejected: mailbox full" is about the
mailbox).  All patterns are matched case-insensitively against the diagnostic collapsed to one
line.  ``naming`` consults the address-level reasons first whatever their place here (see
``naming_rules.ADDRESS_FIRST``).
"""

from __future__ import annotations

import re
from functools import lru_cache

# Building blocks.  A gap that stays within one clause: addresses (with dots) may sit inside
# it, but not the colon or semicolon that starts another statement.
_GAP = r"[^;:!?]{0,60}?"
_MAILBOX = r"(?:mail[- ]?box|in-?box|mail ?folder|mail ?drop)"
# Who an address-level predicate is about.  A sender's address is not the recipient's.
_RECIPIENT = (
    rf"(?<!sender )(?<!from )(?<!sender's )(?:user(?: ?name)?|recipient|addressee|{_MAILBOX}|account|"
    r"(?:e-?mail )?address|local[- ]?part|alias|destination)"
)
_DOES_NOT_EXIST = r"(?:does ?n[o']t|do not|did not|doesn't) exist|not exists?|no longer exists?"
_IP = r"\d{1,3}(?:\.\d{1,3}){3}"
# What is said of a sending host that is refused.  "Not permitted to relay" is not among them:
# that is about the destination (or a demand to authenticate), not about the host.
_REFUSED = (r"(?:blocked|listed|black-?listed|block-?listed|banned|rejected|refused|denied|"
            r"not (?:allowed|permitted|authori[sz]ed) to (?:send|connect|deliver))")

REASON_PHRASES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("virusdetected", (
        r"\bvirus(?:es)?\b(?!-)", r"malware", r"\binfected\b", r"trojan", r"\bworm\b detected",
        r"malicious (?:content|code|attachment|software|payload|file|link)", r"ransomware",
    )),
    ("securityerror", (
        r"authentication (?:is )?required", r"smtp auth", r"turn on smtp authentication",
        r"must issue a starttls", r"(?:tls|ssl|encryption|starttls) (?:is )?(?:required|mandatory)",
        r"unauthenticated e-?mail", r"\bdmarc\b", r"authentication checks",
        r"\bspf\b.{0,30}(?:fail|check|record|validation|reject|error)", r"(?:fail\w*|bad|invalid|no)\s+spf",
        r"\bdkim\b.{0,30}(?:fail|invalid|verif|check|missing|required)", r"(?:fail\w*|no valid|invalid|missing)\s+dkim",
        r"authentication (?:failed|failure)", r"not authenticated", r"sender policy framework",
    )),
    ("norelaying", (
        r"relay(?:ing)? (?:access )?(?:is )?(?:denied|not permitted|prohibited|not allowed|refused|disabled|rejected)",
        r"(?:unable|not permitted|not allowed|not authori[sz]ed|we do not|cannot|can't|do not|don't) (?:to )?relay",
        r"no relaying", r"relay not (?:permitted|allowed|authori[sz]ed)", r"not a gateway", r"as a relay\b",
        r"\brcpthosts\b", r"not in my list of (?:allowed )?(?:rcpt ?hosts|domains|hosts)",
        r"(?:domain|recipient) (?:is )?not (?:hosted|handled|served|local) (?:here|by this|on this)",
    )),
    ("mailboxfull", (
        rf"{_MAILBOX}{_GAP}\b(?:is |was |currently )*(?:full|over ?quota|over (?:its |the )?(?:quota|limit|size))",
        rf"{_MAILBOX}{_GAP}\b(?:has |is )?(?:exceed(?:s|ed)?|reached|over)\b",
        rf"{_MAILBOX}\b(?: \w+){{0,3}} (?:limit|quota|size|capacity)\b.{{0,10}}(?:exceeded|reached)",
        rf"full {_MAILBOX}", r"(?<!sending )(?<!daily )(?<!rate )(?<!message )\bquota\b",
        r"exceeded (?:its |the |his |her |their )?(?:storage|mailbox|disk|space) (?:quota|allocation|limit)",
        r"storage (?:allocation|limit|quota|space)", r"out of storage space",
        r"(?:account|user|folder|inbox) (?:is )?full\b", r"\bis full\b",
        r"(?:insufficient|not enough|no more) (?:user |mailbox |free |disk )?(?:storage|space)(?! on the system)",
        r"too many messages (?:on|in) (?:the |this |his |her |your |their )?(?:server|mail ?box|inbox|folder|account)",
        r"number of messages in recipient's mailbox exceeded", r"too much mail data",
        r"exceeds? (?:the )?(?:user'?s? )?(?:quota|storage)", r"disk (?:quota|space limit)",
        r"postfach (?:ist )?voll", r"bo[iî]te (?:aux lettres )?(?:est )?pleine", r"buz[oó]n (?:est[aá] )?lleno",
    )),
    ("mesgtoobig", (
        r"message (?:is |was )?too (?:big|large|long)", r"(?:message|mail|e-?mail) (?:size|length)\b.{0,20}"
        r"(?:exceed|limit|too|over|larger|greater)", r"\bsize limit", r"size exceed",
        r"(?:exceeds?|exceeding|over|greater than|larger than) (?:the |our |this )?(?:maximum |max\.? |allowed |"
        r"permitted |fixed )?(?:message |mail )?size", r"max(?:imum)? (?:allowed )?(?:message |mail )?size",
        r"(?:message|mail) (?:is )?larger than", r"too big for (?:the|this) (?:host|system|server)",
        r"line limit exceeded",
    )),
    ("suspend", (
        rf"{_RECIPIENT}{_GAP}\b(?:is |has been |was |currently |temporarily )*"
        r"(?:disabled|suspended|deactivated|inactive|frozen|locked|closed|discontinued|expired|on hold)\b",
        rf"(?:deactivated|disabled|suspended|frozen|locked|closed) {_RECIPIENT}",
        r"\bis disabled", r"disabled or discontinued", r"disabled recipient", r"user account is unavailable",
    )),
    ("notaccept", (
        r"does not accept (?:any )?(?:e-?)?mail", r"accepts? no (?:e-?)?mail", r"null mx",
        r"indicated no smtp service", r"(?:doesn't|does not|will not|won't) receive (?:any )?e-?mail",
        r"no mx record found", r"not accepting (?:any )?(?:e-?)?mail", r"mail is not accepted",
    )),
    ("hostunknown", (
        r"\bhost (?:is )?unknown", r"unknown (?:host|domain|mail domain)", r"(?:host|domain)(?: name)? not found",
        r"no such (?:host|domain)", rf"(?<!sender )(?<!sender's )(?:domain|host)(?: name)? (?:{_DOES_NOT_EXIST})",
        r"(?:couldn't|could not|cannot|can't|unable to) find any host", r"unrout(?:e)?able address",
        r"illegal host/domain", r"invalid (?:recipient )?domain\b", r"domain (?:is )?(?:invalid|not valid)",
        r"non-?exist(?:ent|ing) (?:domain|host)", r"domain is not reachable", r"name or service not known",
        r"(?<![@\w.-])[a-z0-9-]+(?:\.[a-z0-9-]+)+ does not exist", r"recipient domain (?:does not exist|not found)",
    )),
    ("networkerror", (
        r"name service error", r"host name lookup failure", r"no route to host",
        r"(?:host|network) (?:is )?unreachable",
        # A refused TCP connection is a host that is down or closed, not a block of our IP:
        # reading it as a block would pause warm-up for a server's outage.
        r"lost connection", r"connection (?:was )?(?:reset|refused|dropped|closed by)",
        r"(?:unable|could not|couldn't|can't|cannot|failed) to (?:connect|establish)",
        r"too many hops", r"hop count exceeded", r"(?:routing|mail) loop", r"\blooping\b",
        r"loop(?:s)? (?:detected|back to myself)",
        r"name ?server (?:reply|error|failure)", r"temporary (?:dns |lookup )+failure", r"nxdomain", r"no mx found",
        r"no mx or a\b", r"(?<!reverse )dns (?:error|lookup|failure|problem|timeout|servfail)",
    )),
    ("userunknown", (
        rf"{_RECIPIENT}{_GAP}\b(?:is |was )?(?:unknown|not known|not found|(?:{_DOES_NOT_EXIST})|not valid|"
        r"not recogni[sz]ed|not listed|unavailable)\b",
        rf"no such (?:user|recipient|{_MAILBOX}|address|account|person|local user|alias|login)",
        rf"unknown (?:user|recipient|{_MAILBOX}|address|account|alias|local[- ]?part|e-?mail|addressee)",
        rf"\bnot an? (?:known|valid|registered|recogni[sz]ed|existing|local|active) (?:\w+ )?(?:user|recipient|"
        rf"{_MAILBOX}|address|account|e-?mail)",
        rf"\b(?<!sender )invalid (?:recipient|{_MAILBOX}|address|user(?:name)?|account|e-?mail|destination)",
        rf"\bbad[ _-]?(?:recipient|destination|address|{_MAILBOX}|user)",
        rf"\bno (?:{_MAILBOX}|account|user)\b.{{0,20}}?\b(?:here|found|available|by that name|exists?)",
        r"(?:does ?n[o']t|does not) have an? [\w.-]+ ?(?:\w+ )?(?:account|mailbox|address)",
        r"(?:e-?mail )?account that you tried to reach does not exist", r"no longer (?:valid|in use)",
        r"recip(?:ient)?notfound", r"undeliverable address", r"address unknown", r"no account by that name",
        r"invalid final delivery userid", r"unknown or illegal alias", r"not our customer",
        r"adresse destinataire invalide", r"(?:utilisateur|destinataire) inconnu",
        r"(?:benutzer|empf[aä]nger) (?:ist )?unbekannt",
        r"usuario (?:desconocido|inexistente|no existe)", r"utente (?:sconosciuto|inesistente)",
        r"ディレクトリ", r"存在しません",
    )),
    ("toomanyconn", (
        r"too many (?:\w+ ){0,2}(?:connections|sessions|messages|recipients|mails|e-?mails|requests|rcpts?|errors)",
        r"(?:connection|sending|message|recipient|session) (?:rate|limit)", r"rate[- ]?limit", r"throttl",
        r"exceeded the (?:rate|connection) limit", r"temporarily deferred due to unexpected volume",
        r"too many invalid recipients", r"max(?:imum)? (?:number of )?(?:connections|recipients|messages) "
        r"(?:exceeded|reached)",
    )),
    ("blocked", (
        r"blocked using", r"block ?list", r"black ?list(?:ed)? (?:ip|host|server)", r"spamhaus", r"spamcop",
        r"\bsorbs\b", r"dnsbl", r"\brbl\b", r"reverse (?:dns|lookup)", r"\bptr record", r"no ptr\b", r"\brdns\b",
        r"ip name lookup failed", r"client host (?:\[[^\]]*\] )?(?:rejected|blocked)", r"reputation",
        r"open relay", r"white-?list",
        rf"(?:\bip|\bclient|(?:your|sending|sender'?s?|connecting) (?:host|server|mail server|network))(?: address)?"
        rf"\b{_GAP}\b(?:is |has been |was )?{_REFUSED}",
        rf"{_IP}\]?\)? (?:is |has been |was )?{_REFUSED}",
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
        rf"(?:recipient|addressee|user)\b{_GAP}\b(?:refuses|rejects|does not (?:wish to )?accept|doesn't accept|"
        r"has (?:blocked|refused)) (?:to accept )?(?:your|this|mail|messages|e-?mail)",
    )),
    ("spamdetected", (
        r"spam(?!haus|cop|trap)", r"\bjunk\b", r"unsolicited", r"bulk (?:e-?)?mail", r"mass[- ]?mail",
        r"content (?:filter|reject)", r"message content rejected", r"\b(?:uribl|surbl)\b",
        r"mail rejete", r"phish",
    )),
    ("policyviolation", (
        r"policy reasons", r"policy violation", r"(?:denied|rejected|refused|blocked) (?:by|for|due to) "
        r"(?:\w+ ){0,2}polic(?:y|ies)", r"rejected for policy", r"(?:violat\w*|breach\w*|against) (?:of )?"
        r"(?:\w+ ){0,3}polic(?:y|ies)", r"security polic",
        r"illegal attachment", r"attachment.{0,40}(?:not allowed|prohibited|blocked|forbidden|not permitted)",
        r"prohibited (?:attachment|file|content)", r"multiple addresses in from",
    )),
    ("rejected", (
        r"sender (?:address )?(?:rejected|refused|denied|blocked|invalid|unknown|not (?:allowed|permitted|accepted))",
        r"domain of sender address", r"sender (?:verify|verification) failed", r"(?:could not|unable to) verify sender",
        r"unroutable sender", r"invalid sender", r"sender (?:is )?not allowed", r"mail from rejected",
        r"address (?:that )?has been blacklisted", r"sender address .{0,40}(?:invalid|unknown|refused)",
        r"sender domain .{0,40}(?:invalid|unknown|not exist)", r"bad sender", r"return path",
        r"(?:without a|no) valid sender domain",
        rf"(?:envelope[- ]?sender|envelope[- ]from|return[- ]path)\b{_GAP}\b(?:is |has been |was )?"
        r"(?:rejected|refused|denied|invalid|unknown|not allowed|blocked)",
    )),
    ("systemfull", (
        r"system (?:is )?full", r"disk (?:is )?full", r"out of disk", r"insufficient system (?:storage|resources)",
        r"file system full",
    )),
    ("mailererror", (
        r"mailer error", r"procmail", r"pipe to \|", r"command died", r"operating system error",
        r"couldn't create", r"child status", r"exit(?:ed)? (?:with )?(?:status|code) \d+",
    )),
    ("systemerror", (
        r"internal (?:system |server )?error", r"system error", r"transaction failed",
        r"could not load", r"unable to contact ldap", r"local configuration error",
        r"server configuration error", r"insufficient permission", r"duplicated message-id",
        r"does not support tls", r"queue file write error", r"local error in processing",
        r"(?:service|server|system) (?:is )?(?:currently |temporarily )?(?:unavailable|not available|busy|overloaded)",
        r"temporary (?:local|server|system) (?:problem|failure|error)",
    )),
    ("expired", (
        r"(?:message|envelope|delivery time) expired", r"in the queue too long", r"too long in (?:the )?queue",
        r"have been failing for a long time", r"not delivered within", r"could not be delivered (?:for|within)",
        r"giving up", r"gave up", r"connection timed out", r"timed out", r"did not accept our requests to connect",
        r"cannot send message for", r"retry time(?:out)? (?:not reached|exceeded)",
        r"could not send message for past", r"unable to deliver.{0,60}after.{0,40}retries",
        r"(?:failed|undeliverable|unable to deliver)\b.{0,20}\b\d+ (?:delivery )?(?:attempts|retries|tries)",
        r"maximum (?:queue )?(?:time|age|lifetime)",
    )),
    ("contenterror", (
        r"content error", r"media error", r"malformed message", r"invalid message",
        r"message (?:header|content) (?:is )?invalid", r"8-?bit (?:data|characters) not allowed",
        r"bare (?:lf|linefeed|line ?feed|cr)\b", r"invalid (?:mime|header)",
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

# Compiled case-sensitive and matched against lower-cased text: Python's case-insensitive
# matching of long alternations costs about three times as much.
COMPILED_PHRASES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (reason, re.compile("|".join(f"(?:{phrase.lower()})" for phrase in phrases)))
    for reason, phrases in REASON_PHRASES
)

_CACHED_TEXT_CHARS = 4000  # only short texts are cached, so hostile input cannot fill memory
# A reply that says why says it early; past this a "diagnostic" is noise or an attack, and
# reading it all would cost time in proportion (about 2 ms per 1,000 characters).
MAX_TEXT_CHARS = 20000


def _matching_entries(text: str) -> tuple[int, ...]:
    lowered = text[:MAX_TEXT_CHARS].lower()
    return tuple(index for index, (_, pattern) in enumerate(COMPILED_PHRASES) if pattern.search(lowered))


_cached_entries = lru_cache(maxsize=1024)(_matching_entries)


def matching_entries(text: str) -> tuple[int, ...]:
    """Indexes (in precedence order) of the ``REASON_PHRASES`` entries whose wording occurs.

    Cached for short texts: a report's words are read for each recipient, by the naming and by
    the policy reading alike.
    """
    return _cached_entries(text) if len(text) <= _CACHED_TEXT_CHARS else _matching_entries(text)


def reasons_in(text: str) -> frozenset[str]:
    """Every reason whose wording occurs in ``text``."""
    return frozenset(COMPILED_PHRASES[index][0] for index in matching_entries(text))


def first_reason(text: str) -> str:
    """The reason of the earliest entry (in precedence order) whose wording occurs, or ""."""
    entries = matching_entries(text)
    return COMPILED_PHRASES[entries[0]][0] if entries else ""
