"""Facts pulled out of free-form SMTP diagnostic text: reply code, enhanced status, command, host.

Every bounce format quotes the remote server differently ("host X said: 550 ...", "Remote host
said: ...", "<<< 550 ...", "ERROR_CODE :550"); these helpers find the same few facts in all of
them so the classifier gets uniform input.
"""

from __future__ import annotations

import re

_STATUS_AFTER_CODE = re.compile(r"(?<![\d.])[245]\d\d[ -]#?([245]\.\d{1,3}\.\d{1,3})(?![0-9]|\.[0-9])")
_STATUS = re.compile(r"(?<![\d.])([245]\.\d{1,3}\.\d{1,3})(?![0-9]|\.[0-9])")
_CODE = re.compile(r"(?<![\d.#])([245]\d\d)(?=[ \-:,;)\]]|$)(?![-:]\d)")
_SPACES = re.compile(r"\s+")
_CONTINUATION = re.compile(r"(?<![\d.])([245]\d\d)-(#?[245]\.\d{1,3}\.\d{1,3})?")

# (pattern, command) pairs; the first that matches names the SMTP command a reply answered.
_COMMAND_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), command)
    for pattern, command in (
        (r"in reply to (?:the )?rcpt to\b", "RCPT"),
        (r"in reply to (?:the )?mail from\b", "MAIL"),
        (r"in reply to (?:the )?(?:end of )?data\b", "DATA"),
        (r"in reply to (?:the )?(?:ehlo|helo|lhlo)\b", "HELO"),
        (r"after rcpt to\b", "RCPT"),
        (r"after mail from\b", "MAIL"),
        (r"after (?:end of data|data)\b", "DATA"),
        (r"after (?:the )?initial connection", "CONN"),
        (r"after (?:ehlo|helo)\b", "HELO"),
        (r"most progress was rcpt to", "RCPT"),
        (r"did not like our rcpt to", "RCPT"),
        (r"did not like our mail from", "MAIL"),
        (r"did not like our (?:final )?data", "DATA"),
        (r"most progress was mail from", "MAIL"),
        (r"does not like recipient", "RCPT"),
        (r"sender was rejected", "MAIL"),
        (r"my name was rejected", "HELO"),
        (r"failed after i sent the message", "DATA"),
        (r"\[rcpt_to\]", "RCPT"),
        (r"\[mail_from\]", "MAIL"),
        (r"for text command", "DATA"),
        (r"step: data", "DATA"),
        (r"smtp command\s*:?\s*data\b", "DATA"),
        (r"smtp command\s*:?\s*rcpt\b", "RCPT"),
        (r"smtp command\s*:?\s*mail\b", "MAIL"),
    )
)
_TRANSCRIPT_COMMAND = re.compile(
    r"^\s*(?:>>>|in:)\s*(rcpt|mail|data|ehlo|helo|lhlo|starttls|auth|quit)\b", re.IGNORECASE
)
_TRANSCRIPT_REPLY = re.compile(r"^\s*(?:<<<|out:)\s*[45]\d\d\b", re.IGNORECASE)

_REMOTE_HOST_PATTERNS: tuple[re.Pattern[str], ...] = tuple(
    re.compile(pattern, re.IGNORECASE)
    for pattern in (
        r"\bhost\s+([A-Za-z0-9][A-Za-z0-9.-]*\.[A-Za-z]{2,}|\d{1,3}(?:\.\d{1,3}){3})\s*\[[^\]]*\]\s*(?:said|refused)",
        r"\bhost\s+([A-Za-z0-9][A-Za-z0-9.-]*\.[A-Za-z]{2,})\s*\[",
        r"\bhost:\s*([A-Za-z0-9][A-Za-z0-9.-]*\.[A-Za-z]{2,})",
        r"\bwhile talking to\s+([A-Za-z0-9][A-Za-z0-9.-]*[A-Za-z0-9])",
        r"(\d{1,3}(?:\.\d{1,3}){3}) (?:does not like recipient|failed after i sent)",
        r"remote host (\d{1,3}(?:\.\d{1,3}){3}) said",
    )
)

_COMMAND_NAMES = {"EHLO": "HELO", "LHLO": "HELO", "END OF DATA": "DATA"}


def collapse(text: str) -> str:
    """One line, single spaces: the form diagnostics are compared and classified in."""
    return _SPACES.sub(" ", text).strip()


def join_continuations(text: str) -> str:
    """Drop the code prefixes a multi-line reply repeats ("550-5.7.1 ... 550-5.7.1 ...").

    Without this, a wording split over two reply lines ("... this message is 550-5.7.1 likely
    suspicious ...") would not be recognised.
    """
    first = _CONTINUATION.search(text)
    if first is None:
        return text
    code, status = first.group(1), first.group(2) or ""
    status_part = rf"(?:{re.escape(status)}\s+)?" if status else ""
    return re.sub(rf"(?<=\S)\s+{code}[ -]{status_part}", " ", text)


def find_status(text: str) -> str:
    """The enhanced status code in ``text``, or "".

    A failure status (4.x.x, 5.x.x) right after a reply code is preferred, because transcripts
    quote the successful replies before the one that failed.
    """
    for pattern in (_STATUS_AFTER_CODE, _STATUS):
        found = [match.group(1) for match in pattern.finditer(text)]
        if found:
            return next((status for status in found if status[0] in "45"), found[0])
    return ""


def find_reply_code(text: str) -> int | None:
    """The first 4xx/5xx reply code in ``text``, else the first 2xx, else None."""
    codes = [int(match.group(1)) for match in _CODE.finditer(text)]
    for code in codes:
        if code >= 400:
            return code
    return codes[0] if codes else None


def find_command(text: str) -> str:
    """The SMTP command the quoted reply answered (``RCPT``, ``MAIL``, ``DATA`` ...), or ""."""
    for pattern, command in _COMMAND_PATTERNS:
        if pattern.search(text):
            return command
    return ""


def transcript_command(text: str) -> str:
    """In a session transcript (``>>> RCPT To:`` / ``<<< 550``), the command before the first error."""
    last = ""
    for line in text.split("\n"):
        sent = _TRANSCRIPT_COMMAND.match(line)
        if sent:
            last = sent.group(1).upper()
            continue
        if last and _TRANSCRIPT_REPLY.match(line):
            return _COMMAND_NAMES.get(last, last)
    return ""


def normalise_command(command: str) -> str:
    command = command.strip().upper()
    return _COMMAND_NAMES.get(command, command)


def find_remote_host(text: str) -> str:
    for pattern in _REMOTE_HOST_PATTERNS:
        match = pattern.search(text)
        if match:
            return match.group(1).lower().rstrip(".")
    return ""
