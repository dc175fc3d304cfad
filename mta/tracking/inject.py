"""Tracking at acceptance: rewrite one recipient's message so its links and pixel carry signed tokens.

Pure. Called by the submission pipeline before DKIM signing, for a message of a tracked stream or
tenant with exactly one recipient: a token names its recipient, so a message shared by several
recipients cannot say who clicked (the same rule as one-click unsubscribe). The API sends one
message per recipient, and so do marketing senders over SMTP.
"""

from __future__ import annotations

import re

from mta.tracking.rewrite import RewriteResult, rewrite_message
from mta.tracking.tokens import CLICK, OPEN, TrackingTokens

__all__ = ["opted_out", "track_message"]

_OFF = {"no", "off", "false", "0", "none"}


def opted_out(header_block: bytes, header: str) -> bool:
    """True if the message says `<header>: no` (or off/false/0/none)."""
    if not header:
        return False
    m = re.search(rb"(?im)^" + re.escape(header.encode("ascii")) + rb"[ \t]*:[ \t]*([^\r\n]*)", header_block)
    return bool(m) and m.group(1).strip().decode("ascii", "replace").lower() in _OFF


def track_message(message: bytes, tokens: TrackingTokens, *, base_url: str, queue_id: str, recipient: str,
                  tenant: str = "", campaign: str = "", variant: str = "", accepted_at: float,
                  clicks: bool = True, opens: bool = True) -> RewriteResult:
    base = base_url.rstrip("/")
    common = {"queue_id": queue_id, "recipient": recipient, "tenant": tenant, "campaign": campaign,
              "variant": variant, "issued_at": accepted_at}

    def click_url(url: str) -> str | None:
        if not clicks or url.startswith(base + "/"):
            return None                 # already ours (a resend of tracked HTML): never wrap twice
        try:
            return f"{base}/c/{tokens.issue(CLICK, url=url, **common)}"
        except ValueError:
            return None                 # too long for a token: the link stays as the app wrote it

    open_url = f"{base}/o/{tokens.issue(OPEN, **common)}" if opens else None
    return rewrite_message(message, click_url, open_url)
