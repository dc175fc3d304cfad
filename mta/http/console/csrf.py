"""CSRF protection for the console's cookie sessions.

The cookie is SameSite=Strict already; on top of that every POST made with the cookie must carry
the session's token (header X-CSRF-Token, or form field `csrf` for the log-out form), which a
page on another origin cannot read. A POST whose Origin header names another origin is refused
too (one that names none, or "null", relies on the token). Bearer requests carry no ambient
credential and need no token.
"""

from __future__ import annotations

import hmac
import secrets

from aiohttp import web

HEADER = "X-CSRF-Token"
FIELD = "csrf"


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_matches(expected: str, given: str) -> bool:
    return bool(given) and hmac.compare_digest(expected.encode(), given.encode())


def same_origin(request: web.Request) -> bool:
    """False only when the browser says the request comes from another origin. "null" says
    nothing: our own pages send it (Referrer-Policy: no-referrer hides the origin of their POSTs),
    so the token has to decide."""
    origin = request.headers.get("Origin")
    if origin is None or origin == "null":
        return True
    return origin == f"{request.scheme}://{request.host}"
