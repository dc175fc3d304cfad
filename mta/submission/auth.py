"""Submission users: a users file with salted scrypt hashes, and their per-user settings.

File format, one user per line (blank lines and lines starting with # are ignored):

    name:scrypt$N$r$p$SALT$HASH[:key=value,key=value]

SALT and HASH are unpadded base64. Settings a line may carry: `tenant`, `stream` (the stream
this user's mail goes to unless an allowed header says otherwise). `mta user add` writes lines.

scrypt is deliberately slow (tens of milliseconds), so verification runs in a worker thread and
successful checks are remembered for a while under a per-process keyed digest, so a busy app
that opens many connections does not burn a core on password hashing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
from dataclasses import dataclass, field

SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
CACHE_SECONDS = 300.0


class UsersFileError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class User:
    name: str
    password_hash: str
    tenant: str = ""
    stream: str = ""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=256 * 1024 * 1024, dklen=32)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
        if scheme != "scrypt":
            return False
        expected = _unb64(digest)
        actual = hashlib.scrypt(password.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p),
                                maxmem=256 * 1024 * 1024, dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def parse_users(text: str, source: str = "users file") -> dict[str, User]:
    users: dict[str, User] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(":")
        if len(parts) not in (2, 3) or not parts[0] or not parts[1].startswith("scrypt$"):
            raise UsersFileError(f"{source}:{lineno}: expected name:scrypt$...[:key=value,...]")
        settings: dict[str, str] = {}
        if len(parts) == 3 and parts[2]:
            for item in parts[2].split(","):
                key, eq, value = item.partition("=")
                if not eq or key not in ("tenant", "stream"):
                    raise UsersFileError(f"{source}:{lineno}: unknown setting {item!r} (tenant, stream)")
                settings[key] = value
        if parts[0] in users:
            raise UsersFileError(f"{source}:{lineno}: duplicate user {parts[0]!r}")
        users[parts[0]] = User(parts[0], parts[1], settings.get("tenant", ""), settings.get("stream", ""))
    return users


def load_users(path: str) -> dict[str, User]:
    if not path:
        return {}
    with open(path, encoding="utf-8") as f:
        return parse_users(f.read(), path)


def format_user(user: User) -> str:
    settings = ",".join(f"{k}={v}" for k, v in (("tenant", user.tenant), ("stream", user.stream)) if v)
    return f"{user.name}:{user.password_hash}" + (f":{settings}" if settings else "")


@dataclass
class Authenticator:
    """Checks credentials; callers run `check` in a thread because scrypt is slow on purpose."""

    users: dict[str, User]
    _key: bytes = field(default_factory=lambda: os.urandom(32))
    _verified: dict[bytes, float] = field(default_factory=dict)

    def check(self, name: str, password: str) -> User | None:
        user = self.users.get(name)
        if user is None:
            # Spend the same time as for a real user so timing does not reveal user names.
            verify_password(password, "scrypt$16384$8$AAAAAAAAAAAAAAAAAAAAAA$" + "A" * 43)
            return None
        token = hmac.new(self._key, f"{name}\0{password}\0{user.password_hash}".encode(), "sha256").digest()
        now = time.monotonic()
        if self._verified.get(token, 0.0) > now:
            return user
        if not verify_password(password, user.password_hash):
            return None
        if len(self._verified) > 10000:
            self._verified.clear()
        self._verified[token] = now + CACHE_SECONDS
        return user
