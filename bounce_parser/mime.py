"""Safe MIME access on top of the stdlib ``email`` package.

Bounces come from everywhere and some are hostile or broken: truncated, with charsets that do
not exist or lie, with huge attachments, or with multiparts nested thousands deep (which makes the
stdlib feed parser recurse until ``RecursionError`` and spend quadratic time on boundaries).  This
module is the only place that turns bytes into ``email.message.Message`` objects and text, and
it never raises: it caps the input, cuts pathological nesting off before parsing, and decodes
at most a bounded prefix of any part.
"""

from __future__ import annotations

import binascii
import codecs
import contextlib
import email
import email.parser
import html
import re
from collections.abc import Iterator
from email import policy
from email.header import decode_header
from email.message import Message

# Everything a bounce says about its recipients sits in its first parts; the returned original
# message can be huge and only its headers matter.  These caps bound memory and time.
MAX_INPUT_BYTES = 2 * 1024 * 1024
MAX_PART_CHARS = 256 * 1024
MAX_DEPTH = 12  # multipart / message nesting walked
MAX_HEADER_BYTES = 128 * 1024  # of the message's own header block

# Lines that may repeat only so often before the rest of the input is dropped: each part header
# costs the stdlib parser a nesting level or a boundary check, each recipient group a record.
_REPEAT_LIMITS: tuple[tuple[re.Pattern[bytes], int], ...] = (
    (re.compile(rb"(?im)^content-type:"), 100),
    (re.compile(rb"(?im)^final-recipient:"), 1000),
)
_TAG = re.compile(r"<[^>]{0,2000}>")
_HIDDEN_BLOCK = re.compile(r"(?is)<(style|script|head)\b.*?</\1\s*>")
_BREAK_TAG = re.compile(r"(?i)<\s*(br|/p|/div|/tr|/li|/h\d|p|div|tr|li)\b[^>]{0,500}>")
_NOT_BASE64 = re.compile(r"[^A-Za-z0-9+/]")


def normalise_newlines(raw: bytes) -> bytes:
    """CRLF and bare CR (old Mac mailboxes) become LF, so every later pattern sees one form."""
    if b"\r" not in raw:
        return raw
    raw = raw.replace(b"\r\n", b"\n")
    if b"\r" in raw:
        raw = raw.replace(b"\r", b"\n")
    return raw


def _cut_repeats(raw: bytes) -> bytes:
    """Drop everything after a line kind has repeated more than its limit.

    The parts that matter come first; what follows hundreds of part headers or recipient
    groups is either a huge returned message or an attack on the parser.
    """
    for pattern, limit in _REPEAT_LIMITS:
        for count, match in enumerate(pattern.finditer(raw), start=1):
            if count > limit:
                raw = raw[: match.start()]
                break
    return raw


def _cap_header_block(raw: bytes) -> bytes:
    """Keep at most MAX_HEADER_BYTES of the top-level header block (and all of the body)."""
    end = raw.find(b"\n\n")
    if end <= MAX_HEADER_BYTES:
        return raw
    cut = raw.rfind(b"\n", 0, MAX_HEADER_BYTES)
    return raw[: max(cut, 0)] + raw[end:]


_LEADING_BLANK_LINES = re.compile(rb"\A(?:[ \t]*\n)+(?=[A-Za-z][A-Za-z0-9-]{0,60}[ \t]*:)")


def strip_leading_blank_lines(raw: bytes) -> bytes:
    """Drop blank (or all-space) lines before the first header line.

    Saved reports (Exchange's among them) often start with an empty line and a line of spaces;
    the stdlib parser takes the first blank line as the end of an empty header block and would
    read the whole report as one body with no structure.
    """
    match = _LEADING_BLANK_LINES.match(raw[:4096])
    return raw[match.end() :] if match else raw


def load_message(raw: bytes) -> tuple[Message, list[str]]:
    """Parse bytes into a Message, never raising; returns the message and a list of defects."""
    defects: list[str] = []
    if len(raw) > MAX_INPUT_BYTES:
        raw = raw[:MAX_INPUT_BYTES]
        defects.append("input truncated")
    raw = strip_leading_blank_lines(normalise_newlines(raw))
    cut = _cut_repeats(_cap_header_block(raw))
    if len(cut) != len(raw):
        defects.append("repetitive input cut off")
        raw = cut
    try:
        return email.message_from_bytes(raw, policy=policy.compat32), defects
    except (RecursionError, Exception) as exc:  # the stdlib parser has many ways to fail
        defects.append(f"mime parse failed: {type(exc).__name__}")
    try:
        parser = email.parser.BytesParser(policy=policy.compat32)
        return parser.parsebytes(raw, headersonly=True), defects
    except Exception as exc:
        defects.append(f"header parse failed: {type(exc).__name__}")
        message = Message()
        message.set_payload(raw.decode("latin-1"))
        return message, defects


def header_text(message: Message, name: str) -> str:
    """A header's value with RFC 2047 words decoded and folding removed ("" if absent)."""
    try:
        value = message.get(name)
    except Exception:
        return ""
    if value is None:
        return ""
    return decode_words(str(value))


def header_values(message: Message, name: str) -> list[str]:
    try:
        values = message.get_all(name) or []
    except Exception:
        return []
    return [decode_words(str(value)) for value in values]


def decode_words(value: str) -> str:
    """Decode RFC 2047 encoded words; on any failure return the input with folding removed."""
    value = unsurrogate(value)
    if "=?" in value:
        try:
            pieces = []
            for chunk, charset in decode_header(value):
                if isinstance(chunk, bytes):
                    pieces.append(decode_bytes(chunk, charset))
                else:
                    pieces.append(chunk)
            value = "".join(pieces)
        except Exception:
            pass
    return " ".join(value.split())


def unsurrogate(text: str) -> str:
    """Headers parsed from bytes keep undecodable bytes as surrogates; read them as UTF-8."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def decode_bytes(data: bytes, charset: str | None) -> str:
    """Decode with the declared charset, then UTF-8, then Latin-1; never raises."""
    candidates = []
    if charset:
        name = charset.strip().strip('"').lower()
        with contextlib.suppress(LookupError, ValueError):  # unknown name, or one with NUL in it
            candidates.append(codecs.lookup(name).name)
    candidates.append("utf-8")
    for name in candidates:
        try:
            return data.decode(name)
        except (UnicodeDecodeError, LookupError):
            continue
        except Exception:  # some codecs raise other errors on garbage
            continue
    # Neither fits: Latin-1 keeps every ASCII byte (addresses, codes) where a lenient decode
    # of a stateful charset such as ISO-2022-JP would swallow them.
    return data.decode("latin-1")


def content_type(part: Message) -> str:
    try:
        return part.get_content_type()
    except Exception:
        return "text/plain"


def part_bytes(part: Message, limit: int = MAX_PART_CHARS) -> bytes:
    """The decoded body of a leaf part, at most about ``limit`` bytes of it."""
    # get_payload() would already decode 8-bit text with the declared charset (lossily, with
    # replacement characters) and get_payload(decode=True) would decode all of a huge part; the
    # stored payload lets us cut first and choose the charset fallbacks ourselves.
    payload = getattr(part, "_payload", None)
    if isinstance(payload, list):
        return b""
    if not isinstance(payload, str):
        payload = str(payload)
    encoding = str(part.get("content-transfer-encoding", "")).strip().lower()
    if encoding == "base64":
        # Four characters carry three bytes.  Padding is dropped with the other non-alphabet
        # characters and restored for the last quantum; a cut-off payload loses its tail.
        letters = _NOT_BASE64.sub("", payload[: limit * 2])
        letters = letters[: limit * 4 // 3]
        whole, rest = divmod(len(letters), 4)
        letters = letters[: whole * 4] + (letters[whole * 4 :] + "==" if rest >= 2 else "")
        try:
            return binascii.a2b_base64(letters)
        except (binascii.Error, ValueError):
            return b""
    # Bytes that were not ASCII come back from the parser as surrogates; this restores them.
    data = payload[:limit].encode("utf-8", "surrogateescape")
    if encoding == "quoted-printable":
        try:
            return binascii.a2b_qp(data)
        except (binascii.Error, ValueError):
            return data
    return data


def part_text(part: Message, limit: int = MAX_PART_CHARS) -> str:
    """The decoded text of a leaf part (HTML reduced to text), bounded by ``limit``."""
    data = part_bytes(part, limit)
    if not data:
        return ""
    try:
        charset = part.get_content_charset()
    except Exception:
        charset = None
    text = decode_bytes(data, charset)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if content_type(part) == "text/html":
        text = html_to_text(text)
    return text


def html_to_text(markup: str) -> str:
    markup = _HIDDEN_BLOCK.sub(" ", markup)
    markup = _BREAK_TAG.sub("\n", markup)
    return html.unescape(_TAG.sub(" ", markup))


def children(part: Message) -> list[Message]:
    try:
        payload = part.get_payload()
    except Exception:
        return []
    if isinstance(payload, list):
        return [child for child in payload if isinstance(child, Message)]
    return []


def iter_report_parts(message: Message) -> Iterator[Message]:
    """Leaf parts of the bounce itself, depth-first, not descending into returned messages.

    A returned original message (message/rfc822) is yielded as one part, so callers can read its
    headers, but its body is never scanned as if the bounce had written it.
    """
    stack: list[tuple[Message, int]] = [(message, 0)]
    while stack:
        part, depth = stack.pop()
        kind = content_type(part)
        if part.is_multipart() and not kind.startswith("message/") and depth < MAX_DEPTH:
            stack.extend((child, depth + 1) for child in reversed(children(part)))
            continue
        yield part
