"""Console log-ins: a form takes an operator API key and gives a session cookie.

Sessions live in the daemon's memory (a restart logs everyone out): the cookie holds only a random
session id, the server keeps the key's hash, its name, the session's CSRF token and its expiry.
Every use checks the key again, so revoking it (`mta api-key revoke`) ends its sessions at once.
Pure bookkeeping with an injected clock; the HTTP side is in routes.py.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass

from mta.http.console.csrf import new_token

COOKIE = "mta_console"
MAX_SESSIONS = 1000         # live sessions kept; the oldest goes first beyond this


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    key_hash: str
    operator: str           # the API key's name, for the audit trail
    csrf: str
    expires: float


class Sessions:
    def __init__(self, lifetime: float, clock: Callable[[], float]) -> None:
        self.lifetime = lifetime
        self.clock = clock
        self._by_id: dict[str, Session] = {}

    def open(self, key_hash: str, operator: str) -> Session:
        now = self.clock()
        self._prune(now)
        while len(self._by_id) >= MAX_SESSIONS:
            del self._by_id[next(iter(self._by_id))]       # dicts keep insertion order: the oldest
        session = Session(secrets.token_urlsafe(32), key_hash, operator, new_token(), now + self.lifetime)
        self._by_id[session.id] = session
        return session

    def get(self, session_id: str) -> Session | None:
        """The live session with this id (None: unknown or expired, which is then forgotten)."""
        session = self._by_id.get(session_id)
        if session is None:
            return None
        if session.expires <= self.clock():
            del self._by_id[session_id]
            return None
        return session

    def close(self, session_id: str) -> None:
        self._by_id.pop(session_id, None)

    def __len__(self) -> int:
        return len(self._by_id)

    def _prune(self, now: float) -> None:
        for sid in [sid for sid, s in self._by_id.items() if s.expires <= now]:
            del self._by_id[sid]
