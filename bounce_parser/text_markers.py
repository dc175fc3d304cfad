"""Data for reading human-written bounce text: where it ends, who is named, what is noise.

Each mail system words its bounce differently, but the shapes repeat: a few lines of prose, a
list of failed addresses each followed by the remote server's words, then a marker line and a
copy of the message.  These tables describe those shapes; ``textscan`` applies them.
"""

from __future__ import annotations

import re


def _compile(patterns: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{pattern})" for pattern in patterns), re.IGNORECASE)


# A line that starts the copy of the original message (everything after it is not the bounce's
# own words).  Matched at the start of the stripped line.
ORIGINAL_MESSAGE_MARKER = _compile(
    (
        r"-*\s*below this line is a copy of the message",
        r"-*\s*this is a copy of (?:the|your) message",
        r"-*\s*(?:the )?original message (?:follows|header|headers)",
        r"-{2,}\s*original message\s*-{2,}",
        r"-+\s*original message\s*$",
        r"original message follows",
        r"-*\s*unsent message follows",
        r"-*\s*returned message\s*-*$",
        r"-*\s*the header of the original message is following",
        r"-*\s*below is a copy of the original message",
        r"-*\s*original mail (?:info|as follows|header)",
        r"-*\s*original mail\b.{0,20}$",
        r"-*\s*(?:a )?copy of (?:the )?(?:original|undelivered|returned|your) message",
        r"-*\s*headers? of (?:the )?(?:original|returned|undelivered) message",
        r"-*\s*(?:the )?(?:original|returned) message headers?",
        r"-*\s*this is a copy of the headers",
        r"-*\s*message headers follow",
        r"-*\s*the text you sent follows",
        r"content-type:\s*message/rfc822",
    )
)

# A line that closes one recipient's diagnostic block (a rule of dashes, stars or equals).
SEPARATOR = re.compile(r"^\s*(?:[-=*_#~]\s*){5,}")
# A line that starts something else than a diagnostic: a MIME boundary, pasted report fields or
# headers.
BLOCK_END = re.compile(
    r"^\s*(?:--[\w=.:/+'()-]{6,}\s*$|content-type:|reporting-mta:|final-recipient:|original-recipient:|"
    r"received:|return-path:|message-id:|x-[\w-]+:)",
    re.IGNORECASE,
)

# A line that is nothing but a rule.
RULE_LINE = re.compile(r"^\s*(?:[-=*_#~]\s*){5,}$")

# Text directly before an address that makes it a failed recipient even inside a sentence.
RECIPIENT_PREFIX = _compile(
    (
        r"rcpt to:?\s*$",
        r"(?:final-|original-)?recipient(?:\(s\))?\s*(?:address)?\s*:\s*$",
        r"^\s*to:\s*$",
        r"(?:could not|cannot|couldn't|can't|unable to|failed to) (?:be )?deliver(?:ed)?"
        r"(?: the)?(?: message| mail| e-?mail)?(?: to)?:?\s*$",
        r"delivery (?:to|failed:?)\s*$",
        r"(?:error|failure|problem) (?:while )?(?:delivering|sending) (?:your |the )?(?:mail|message|e-?mail) to:?\s*$",
        r"(?:was |were |has been )?not delivered to:?\s*$",
        r"did not reach the following recipients?:?\s*$",
        r"(?:your )?message to:?\s*$",
        r"\byou sent (?:a )?(?:mail|message|e-?mail) to:?\s*$",
        r"(?:undeliverable|undelivered) (?:to|address):?\s*$",
        r"unknown (?:user|recipient|address):?\s*$",
        r"for (?:recipient|address):?\s*$",
        r"address(?:es)? failed:?\s*$",
        r"following (?:address|recipient)(?:es|s|\(es\)|\(s\))?:?\s*$",
    )
)

# A "To:" line echoing the original's header: it names a recipient, but possibly the sender's
# own address in a copy of the message.
HEADER_ECHO = re.compile(r"^\s*to:\s*$", re.IGNORECASE)

# An SMTP reply quoting the address: "550 5.1.1 <a@b>... User unknown".
REPLY_PREFIX = re.compile(r"^(?:<<<\s*)?\d{3}(?:[ -]#?\d\.\d{1,3}\.\d{1,3})?[ -]?$")

# Text before an address that marks it as a sender, a contact or something else that is not
# the failed recipient.
NOT_RECIPIENT_PREFIX = _compile(
    (
        r"mail from:?\s*<?$",
        r"\bfrom:?\s*<?$",
        r"sender[^a-z]{0,3}(?:address)?:?\s*<?$",
        r"generated from\s*<?$",
        r"envelope-from\s*<?$",
        r"return-path:?\s*<?$",
        r"reply-to:?\s*<?$",
        r"\bsent by\s*<?$",
        r"\bcontact\b.{0,40}$",
        r"https?://\S*$",
        r"\bcc:\s*$",
        r"message-id:?\s*<?$",
        r"\bby\s*<?$",
        r"envelope-sender\s*<?$",
    )
)

# A line that introduces the sender on the following line ("A message sent by\n  <x>").
SENDER_INTRO = re.compile(r"(?:sent by|message from|original sender|^from)\s*:?\s*$", re.IGNORECASE)

# Characters that may surround an address on a line that names nothing but that address.
ADDRESS_LINE_NOISE = re.compile(r"[\s<>:;,.*\-\"'\[\]()]+|^>>>|^\*")

# After an address on its own line: text that is a date or an echo, not a diagnostic.
TRAILING_NOISE = re.compile(r"^\s*(?:>\s*)?(?:on\s+\w{3},?\s.*|on\s+\d.*)?$", re.IGNORECASE)

# Bounce text that announces a delay warning rather than a final failure.
DELAY_NOTICE = _compile(
    (
        r"has been delayed", r"will be retried", r"still being retried", r"warning message only",
        r"delivery (?:is )?delayed", r"message (?:has been )?delayed", r"could not send message for past",
        r"will continue (?:to )?(?:try|trying)", r"not yet been delivered",
    )
)

# A header line of a message (not a delivery-status field) and the names that only a real
# message's header block carries: a run of header lines holding one of these is a pasted copy
# of a message, whose addresses (From, To, a folded Cc of forty) are never failed recipients.
HEADER_LINE = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,60}:(?:\s|$)")
MESSAGE_HEADER_NAMES = frozenset(
    {"received", "return-path", "message-id", "mime-version", "dkim-signature", "delivered-to",
     "references", "in-reply-to", "x-mailer", "content-transfer-encoding", "authentication-results"}
)
