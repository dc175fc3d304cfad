"""Split an mbox file's bytes into its messages (pure; the caller reads the file)."""

from __future__ import annotations

import re

# "From " at the start of a line begins a message when it opens the file or follows a blank
# line; a "From " inside a body that the writer forgot to escape rarely follows a blank line
# *and* carries a year, which is what is asked for.
_YEAR = re.compile(rb"\b\d{4}\b")
_NOT_SPACE = re.compile(rb"\S")
_MAX_SEPARATOR_LINE = 1000


def is_mbox(raw: bytes) -> bool:
    return raw.startswith(b"From ") and not raw.startswith(b"From: ")


def _line_end(raw: bytes, start: int) -> tuple[int, int]:
    """``(end of the line's text, start of the next line)`` for the line at ``start``."""
    newline = raw.find(b"\n", start)
    if newline < 0:
        return len(raw), len(raw)
    end = newline - 1 if newline > start and raw[newline - 1 : newline] == b"\r" else newline
    return end, newline + 1


def _separators(raw: bytes) -> list[tuple[int, int]]:
    """``(line start, body start)`` of every message separator line, in order."""
    found = []
    position = 0
    while position < len(raw):
        if position == 0 or raw.startswith(b"\n", position - 2) or raw.startswith(b"\n\r\n", position - 3):
            end, body = _line_end(raw, position)
            line = raw[position : min(end, position + _MAX_SEPARATOR_LINE)]
            if position == 0 or _YEAR.search(line):
                found.append((position, body))
        next_from = raw.find(b"\nFrom ", position)
        if next_from < 0:
            break
        position = next_from + 1
    return found


def split_mbox(raw: bytes) -> list[bytes]:
    """The messages of an mbox, without their ``From `` separator lines.

    Input that does not start with a ``From `` line is returned whole as one message, so the
    caller can pass any file through this function.
    """
    if not is_mbox(raw):
        return [raw] if raw else []
    if b"\n" not in raw and b"\r" in raw:
        raw = raw.replace(b"\r", b"\n")  # old Mac line ends
    separators = _separators(raw)
    messages = []
    for index, (_, body_start) in enumerate(separators):
        end = separators[index + 1][0] if index + 1 < len(separators) else len(raw)
        if _NOT_SPACE.search(raw, body_start, end):
            messages.append(raw[body_start:end])
    return messages
