"""RFC 822 style field blocks, as used by message/delivery-status and message/feedback-report.

Both report types are blocks of ``Name: value`` lines separated by blank lines.  Real reports
break the rules (no blank line between recipients, fields repeated, folded lines, text mixed
in), so grouping is done by meaning: a recipient-level field that the current group already has
starts a new group.
"""

from __future__ import annotations

import re
from email.message import Message

from . import mime

_FIELD = re.compile(r"^([A-Za-z][A-Za-z0-9-]{0,60})[ \t]*:[ \t]*(.*)$")

# Fields that describe one recipient in a delivery-status report (RFC 3464 section 2.3).
RECIPIENT_FIELDS = frozenset(
    {
        "original-recipient",
        "final-recipient",
        "action",
        "status",
        "remote-mta",
        "diagnostic-code",
        "last-attempt-date",
        "final-log-id",
        "will-retry-until",
        "x-actual-recipient",
        "x-supplementary-info",
        "x-display-name",
        "x-powermta-bouncecategory",
    }
)


def unfold_fields(text: str) -> list[tuple[str, str] | None]:
    """``(name, value)`` pairs in order, with ``None`` marking each blank line."""
    items: list[tuple[str, str] | None] = []
    for line in text.split("\n"):
        if not line.strip():
            items.append(None)
            continue
        if line[0] in " \t" and items and items[-1] is not None:
            name, value = items[-1]
            items[-1] = (name, f"{value} {line.strip()}")
            continue
        match = _FIELD.match(line)
        if match:
            items.append((match.group(1).lower(), match.group(2).strip()))
        elif items and items[-1] is not None and items[-1][0] == "diagnostic-code":
            # A multi-line reply pasted without folding ("550-first line" / "550 last line").
            name, value = items[-1]
            items[-1] = (name, f"{value} {line.strip()}")
    return items


def field_text(part: Message) -> str:
    """The text of a message/delivery-status or message/feedback-report part.

    The stdlib parser turns such parts into a list of header blocks; an encoded or malformed
    part stays a string.  Either way this gives back plain ``Name: value`` text.
    """
    blocks = mime.children(part)
    if not blocks:
        return mime.part_text(part)
    lines: list[str] = []
    for block in blocks:
        try:
            items = block.items()
        except Exception:
            continue
        for name, value in items:
            # Report fields are not headers: RFC 2047 words in them are data (an encoded local
            # part stays encoded), so only the folding is undone.
            lines.append(f"{name}: {' '.join(mime.unsurrogate(str(value)).split())}")
        body = block.get_payload()
        if isinstance(body, str) and body.strip():
            # A line that is not a field ends the stdlib's header block; the rest (often the
            # unfolded continuation of a multi-line Diagnostic-Code) becomes its "body".
            lines.append(body[: mime.MAX_PART_CHARS].rstrip("\n"))
        lines.append("")
    return "\n".join(lines)


def group_fields(text: str) -> tuple[dict[str, str], list[dict[str, str]]]:
    """Split report text into per-message fields and a list of per-recipient field dicts."""
    per_message: dict[str, str] = {}
    groups: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for item in unfold_fields(text):
        if item is None:
            if current:
                groups.append(current)
                current = {}
            continue
        name, value = item
        if name not in RECIPIENT_FIELDS:
            per_message.setdefault(name, value)
            continue
        # A repeated field starts the next recipient; fields come in any order within a group
        # (Postfix writes Final- before Original-Recipient, some put Action first).
        if current and name in current:
            groups.append(current)
            current = {}
        current[name] = value
    if current:
        groups.append(current)
    return per_message, groups
