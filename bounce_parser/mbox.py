"""Split an mbox file's bytes into its messages (pure; the caller reads the file)."""

from __future__ import annotations

import re

# "From " at the start of a line begins a message when it opens the file or follows a blank
# line; a "From " inside a body that the writer forgot to escape rarely follows a blank line
# *and* carries the envelope sender and a date, which is what the pattern asks for.
_SEPARATOR = re.compile(rb"(?:\A|\r?\n\r?\n|\r\r)(From [^\r\n]*\S+[^\r\n]*\d{4}[^\r\n]*)(?:\r?\n|\r)")


def is_mbox(raw: bytes) -> bool:
    return raw.startswith(b"From ") and b"\n" in raw[:1000] + b"\n" and not raw.startswith(b"From: ")


def split_mbox(raw: bytes) -> list[bytes]:
    """The messages of an mbox, without their ``From `` separator lines.

    Input that does not start with a ``From `` line is returned whole as one message, so the
    caller can pass any file through this function.
    """
    if not is_mbox(raw):
        return [raw] if raw else []
    messages = []
    starts = [(match.start(1), match.end()) for match in _SEPARATOR.finditer(raw)]
    for index, (_, body_start) in enumerate(starts):
        end = starts[index + 1][0] if index + 1 < len(starts) else len(raw)
        message = raw[body_start:end]
        if message.strip():
            messages.append(message)
    return messages
