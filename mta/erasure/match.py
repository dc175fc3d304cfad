"""Which bytes name an address: the address itself, any case, not as part of a longer one
("ann@example.test" is not in "joann@example.test" nor in "ann@example.test.evil")."""

from __future__ import annotations

import re

from mta.spool.suppression import normalize


class AddressMatcher:
    def __init__(self, address: str) -> None:
        self.address = normalize(address)
        if "@" not in self.address or any(c.isspace() for c in self.address):
            raise ValueError(f"not an address: {address!r}")
        escaped = re.escape(self.address.encode())
        self._bytes = re.compile(rb"(?<![A-Za-z0-9._%+=-])" + escaped + rb"(?![A-Za-z0-9_-]|\.[A-Za-z0-9])",
                                 re.IGNORECASE)

    def in_bytes(self, data: bytes) -> bool:
        return self._bytes.search(data) is not None

    def in_text(self, text: str) -> bool:
        return self._bytes.search(text.encode("utf-8", "surrogateescape")) is not None
