"""Reading SMTP replies out of received bytes: the transaction's reader and the reply peek
(mta.delivery.replypeek) both use it."""

from __future__ import annotations

import aiosmtplib
from aiosmtplib import SMTPResponse

MAX_REPLY_BYTES = 65536         # a reply longer than this (all its lines) is a broken server


def take_reply(buf: bytearray) -> SMTPResponse | None:
    """Removes the first complete reply (all its lines) from `buf` and returns it; None if `buf`
    does not hold a whole reply yet. Malformed replies raise SMTPResponseException."""
    start = 0
    texts: list[bytes] = []
    while True:
        end = buf.find(b"\n", start)
        if end < 0:
            if len(buf) > MAX_REPLY_BYTES:
                raise aiosmtplib.SMTPResponseException(-1, "Response too long")
            return None
        line = bytes(buf[start:end])
        start = end + 1
        head = line[:3]
        if len(head) != 3 or not head.isdigit():
            text = line.decode("utf-8", "replace").strip()
            raise aiosmtplib.SMTPResponseException(-1, f"Malformed SMTP response line: {text}")
        texts.append(line[4:].strip(b" \t\r"))
        if line[3:4] != b"-":
            break
    del buf[:start]
    return SMTPResponse(int(head), b"\n".join(texts).decode("utf-8", "surrogateescape"))
