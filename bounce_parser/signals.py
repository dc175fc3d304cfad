"""Is a message without a report part a bounce, an auto-reply, or ordinary mail?

Ordinary mail must give no records, so a text bounce is only read as one when enough of the
usual signs agree: a mailer-daemon sender, a bounce subject, an X-Failed-Recipients header,
bounce wording in the body.
"""

from __future__ import annotations

import re

from .wordings import reasons_in

_SYSTEM_SENDER = re.compile(
    r"(?:^|[<\s\"])(?:mailer[-_]?daemon|post_?master|mail[-_]?delivery|mmdf|bounces?|mail[-_]?system|"
    r"mail-?router|owner-)[^@\s]{0,64}@|-(?:admin|owner|request)@|mailer-daemon",
    re.IGNORECASE,
)
# Header values are attacker-controlled; the signs are in their first characters.
_MAX_HEADER_CHARS = 1000
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|undelivered|delivery status notification|failure notice|returned mail|"
    r"mail delivery (?:failed|failure|subsystem)|delivery fail|failed delivery|failure delivery|non.?delivery|"
    r"nondeliverable|could not be delivered|delivery has failed|returned to sender|mail system error|"
    r"delivery notification|delivery report|error mail report|delivery failure|loop alert|"
    r"mail could not be delivered|message delivery has failed|delayed mail|warning: message .* delayed|"
    r"delivery status|non recapitabile|unzustellbar|non remis|no entregado|postmaster notify|"
    r"配信できません|送信できません|配送できません|届きません|エラー",
    re.IGNORECASE,
)
_BOUNCE_BODY = re.compile(
    r"could not be delivered|undeliverable|delivery (?:has )?failed|permanent (?:fatal )?error|"
    r"failed permanently|did not reach|not delivered|unable to deliver|delivery status notification|"
    r"error occurred while|following addresses had|address(?:es|\(es\))? failed|rejected by a remote|"
    r"delivery to the following|was not delivered|wasn't delivered|could not deliver|returned mail|"
    r"delivery of your message|has been delayed|mail delivery software|failed to deliver|"
    r"cannot be delivered|message could not be sent|transcript of (?:the )?session|"
    r"failure reasons|did not receive this message|requested action not taken|error message below|"
    r"(?:<<<|>>>)\s*(?:\d{3}\b|rcpt to)|mail loop|loop alert|duplicated message-id|"
    r"送信できませんでした|配信できませんでした|配信できません",
    re.IGNORECASE,
)
_AUTO_REPLY_SUBJECT = re.compile(
    r"^(?:auto(?:matic)?[ -]?(?:reply|response|respons|antwort)|out of (?:the )?office|vacation|"
    r"away from|abwesenheit|absence|r[ée]ponse automatique|respuesta autom)|\bauto(?:reply|response)\b|"
    r"^auto:|automatic (?:reply|response)|out of office|autorespons",
    re.IGNORECASE,
)


def bounce_score(sender: str, subject: str, headers: dict[str, str], body: str) -> int:
    """A rough count of bounce signs (0 for ordinary mail)."""
    score = 0
    if is_system_sender(sender):
        score += 2
    if _BOUNCE_SUBJECT.search(subject[:_MAX_HEADER_CHARS]):
        score += 2
    if "x-failed-recipients" in headers:
        score += 3
    if "return-path" in headers and headers["return-path"].strip() in ("<>", ""):
        score += 1  # the null sender of notifications
    if _BOUNCE_BODY.search(body[:20000]):
        score += 2
    if _is_null_sender_notice(headers):
        score += 1
        if reasons_in(body[:_MAX_WORDING_CHARS]) - _NOT_A_FAILURE_WORDING:
            # A notice from the null sender that says why an address failed ("that's not a
            # valid user here") is a bounce even without a bounce subject or sender name.
            score += 1
    return score


_MAX_WORDING_CHARS = 2000
# Reasons whose words also turn up in ordinary notices (a mailing's "expired" offer).
_NOT_A_FAILURE_WORDING = frozenset({"expired", "spamdetected", "policyviolation"})


def _is_null_sender_notice(headers: dict[str, str]) -> bool:
    """Sent automatically to the null sender's way: RFC 3834 Auto-Submitted and an empty return path."""
    auto = headers.get("auto-submitted", "").strip().lower()
    null = headers.get("return-path", "").strip() in ("<>", "") and "return-path" in headers
    return null and auto.startswith("auto-")


def is_system_sender(sender: str) -> bool:
    """A mailer daemon, postmaster or list manager, as opposed to a person or a newsletter."""
    return _SYSTEM_SENDER.search(sender[:_MAX_HEADER_CHARS]) is not None


def looks_like_bounce(sender: str, subject: str, headers: dict[str, str], body: str) -> bool:
    return bounce_score(sender, subject, headers, body) >= 3


def looks_like_auto_reply(subject: str, headers: dict[str, str]) -> bool:
    """An RFC 3834 auto-reply (vacation, out of office), which is not a failure."""
    auto = headers.get("auto-submitted", "").lower()
    if "x-autoreply" in headers or "x-autorespond" in headers or headers.get("precedence", "").lower() == "auto_reply":
        return True
    subject = subject.strip()[:_MAX_HEADER_CHARS]
    if auto.startswith("auto-replied") and _AUTO_REPLY_SUBJECT.search(subject):
        return True
    return bool(_AUTO_REPLY_SUBJECT.search(subject))
