"""Find failed recipients and their diagnostics in a bounce's human-readable text.

Works on any wording: a line that names nothing but an address (``<a@b>:``, ``  a@b``,
``a@b on <date>``), an address after a recipient phrase (``RCPT TO:<a@b>``, ``Could not be
delivered to: <a@b>``) or an SMTP reply quoting it (``550 <a@b>... User unknown``) is a failed
recipient; the lines under it, up to the next recipient or rule line, are its diagnostic.
Addresses of the sender (known from the headers or introduced as such) are never recipients.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import smtp_text, text_markers
from .addresses import ADDRESS, normalise

MAX_DIAGNOSTIC_LINES = 30
MAX_REGION_LINES = 400
MAX_LINE_CHARS = 2000  # bounce lines are short; a huge one is noise or an attack
MAX_MENTIONS = 500


@dataclass(slots=True)
class TextRecipient:
    address: str
    diagnostic: str
    strong: bool
    command: str = ""


def split_at_original(text: str) -> tuple[str, str]:
    """``(the bounce's own words, the pasted original)`` split at the first marker line."""
    lines = text.split("\n")
    for index, line in enumerate(lines):
        if text_markers.ORIGINAL_MESSAGE_MARKER.match(line[:MAX_LINE_CHARS].strip()):
            return "\n".join(lines[:index]), "\n".join(lines[index + 1 :])
    return text, ""


def _lines(text: str) -> list[str]:
    lines = [line[:MAX_LINE_CHARS] for line in text.split("\n", MAX_REGION_LINES)[:MAX_REGION_LINES]]
    return _unquote(lines)


def _unquote(lines: list[str]) -> list[str]:
    """A forwarded bounce is quoted with "> "; read it as if it were not."""
    filled = [line for line in lines if line.strip()]
    if filled and sum(line.startswith(">") for line in filled) * 2 > len(filled):
        return [line[1:].removeprefix(" ") if line.startswith(">") else line for line in lines]
    return lines


MIN_HEADER_BLOCK = 3  # header lines in a row before a run counts as a pasted message


def pasted_header_lines(lines: list[str]) -> set[int]:
    """Indexes of lines inside a pasted copy of a message's header block.

    A run of ``Name: value`` lines (with their folded continuations) that names a header only
    a message has (Received, Message-ID ...) is a copy of the original, whatever marker line
    introduced it, or none.  A summary such as Exchange's "To: / Subject: / Sent:" is not one.
    """
    masked: set[int] = set()
    index = 0
    while index < len(lines):
        if not text_markers.HEADER_LINE.match(lines[index]):
            index += 1
            continue
        end, names = index, set()
        while end < len(lines):
            line = lines[end]
            if text_markers.HEADER_LINE.match(line):
                names.add(line.split(":", 1)[0].lower())
            elif not (line[:1] in (" ", "\t") and line.strip()):
                break  # neither a header nor a folded continuation of one
            end += 1
        if len(names) >= MIN_HEADER_BLOCK and names & text_markers.MESSAGE_HEADER_NAMES:
            masked.update(range(index, end))
        index = max(end, index + 1)
    return masked


@dataclass(slots=True)
class _Mention:
    address: str
    line: int
    strong: bool
    rest: str  # what follows the address on its line (the whole line when that is a reply)


def _mentions(lines: list[str], senders: set[str]) -> list[_Mention]:
    found: list[_Mention] = []
    previous = ""  # the last non-blank line before the current one
    pasted = pasted_header_lines(lines)
    for index, line in enumerate(lines):
        if index and lines[index - 1].strip():
            previous = lines[index - 1]
        if index in pasted:
            continue
        matches = list(ADDRESS.finditer(line))
        anchor: int | None = None
        for position, match in enumerate(matches):
            address = normalise(match.group(1))
            start, end = match.span(1)
            following = matches[position + 1] if position + 1 < len(matches) else None
            if following is not None and line[end : following.start(1)].strip() == "<":
                # "name <address>": the bracketed one is the address, and it stands where the
                # name stands.
                anchor = start if anchor is None else anchor
                continue
            prefix = line[: start if anchor is None else anchor].rstrip("<\"'")
            before = prefix.rstrip()
            anchor = None
            after = line[end:].lstrip(">\"'")
            if text_markers.NOT_RECIPIENT_PREFIX.search(prefix):
                continue
            if not before.strip() and text_markers.SENDER_INTRO.search(previous.strip()):
                continue
            alone = not text_markers.ADDRESS_LINE_NOISE.sub("", before)
            quoted_in_reply = text_markers.REPLY_PREFIX.match(before.strip()) is not None
            named = text_markers.RECIPIENT_PREFIX.search(before) is not None
            # A sender's address is skipped unless the line plainly lists it as a failed
            # recipient (anonymised or self-addressed mail has sender == recipient); a reply
            # quoting it is the answer to MAIL FROM.
            if address in senders and not (alone or (named and not text_markers.HEADER_ECHO.search(before))):
                continue
            # A reply quoting the address ("550 5.1.1 <a@b>... User unknown") or a line naming it
            # ("SMTP error after RCPT TO:<a@b>:") is itself part of the diagnostic.
            rest = after if alone else line.strip()
            found.append(_Mention(address, index, alone or named or quoted_in_reply, rest))
            if len(found) >= MAX_MENTIONS:
                return found
    return found


def _block_after(lines: list[str], start: int, stop_lines: set[int], first_rest: str) -> str:
    """The diagnostic under a recipient line: its own remainder and the lines below it."""
    parts: list[str] = []
    rest = first_rest.strip().lstrip(":").strip()
    if rest and not text_markers.TRAILING_NOISE.match(rest):
        parts.append(rest)
    for index in range(start + 1, min(len(lines), start + 1 + MAX_DIAGNOSTIC_LINES)):
        line = lines[index]
        if index in stop_lines or text_markers.SEPARATOR.match(line) or text_markers.BLOCK_END.match(line):
            break
        if line.strip():
            parts.append(line.strip())
    return smtp_text.collapse(" ".join(parts))


def scan(text: str, senders: set[str], *, loose: bool = True) -> list[TextRecipient]:
    """Failed recipients named in ``text`` (the bounce's own words only), in order.

    When no line clearly lists a recipient, addresses merely mentioned in a sentence are taken
    instead, but only if ``loose`` (the caller trusts that the text is a bounce).
    """
    lines = _lines(text)
    mentions = _mentions(lines, senders)
    strong = [mention for mention in mentions if mention.strong]
    chosen = strong or (mentions if loose else [])
    stop_lines = {mention.line for mention in strong}
    results: dict[str, TextRecipient] = {}
    for mention in chosen:
        if mention.strong:
            diagnostic = _block_after(lines, mention.line, stop_lines, mention.rest)
        else:
            diagnostic = smtp_text.collapse(lines[mention.line])
        command = smtp_text.transcript_command("\n".join(lines[mention.line : mention.line + MAX_DIAGNOSTIC_LINES]))
        known = results.get(mention.address)
        if known is None:
            results[mention.address] = TextRecipient(mention.address, diagnostic, mention.strong, command)
        elif diagnostic and diagnostic not in known.diagnostic:
            # Listed once in a summary and again in the transcript: both say something.
            known.diagnostic = f"{known.diagnostic} {diagnostic}".strip()
            known.command = known.command or command
    return list(results.values())


def block_for_local_part(text: str, local_part: str) -> str:
    """The diagnostic under a line naming only ``local_part`` (Exim lists unqualified names)."""
    lines = _lines(text)
    for index, line in enumerate(lines):
        if line.strip().strip("<>:").lower() == local_part:
            return _block_after(lines, index, set(), "")
    return ""


def region_diagnostic(text: str, limit: int = 1000) -> str:
    """The whole of the bounce's own words on one line, for reports that name no reason per address."""
    lines = _lines(text)
    kept = (line for line in lines if not text_markers.RULE_LINE.match(line))
    return smtp_text.collapse(" ".join(kept))[:limit]


def is_delay_notice(text: str) -> bool:
    return text_markers.DELAY_NOTICE.search(smtp_text.collapse(text)) is not None
