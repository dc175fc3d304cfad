"""Test messages: realistic marketing mail with MIME headers, of a chosen size."""

from __future__ import annotations

HEADERS = (
    b"From: Example News <news@example.com>\r\n"
    b"To: Alice <alice@example.net>\r\n"
    b"Subject: Our  autumn\r\n  sale starts today\r\n"
    b"Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n"
    b"Message-ID: <20261123100000.abc@example.com>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"X-Mailer: tests\r\n"
)


def message(size: int = 2000, *, headers: bytes = HEADERS, extra_headers: bytes = b"") -> bytes:
    """Headers, a blank line and a body of about `size` bytes with the whitespace that relaxed
    canonicalisation rewrites (runs of spaces, tabs, trailing blanks, empty lines at the end)."""
    line = b"Hello  there,\tthis is line %05d of a message about\t\tsomething important.  \r\n"
    lines = []
    total = 0
    n = 0
    while total < size:
        chunk = line % n
        lines.append(chunk)
        total += len(chunk)
        n += 1
    return headers + extra_headers + b"\r\n" + b"".join(lines) + b"\r\n \r\n\r\n"
