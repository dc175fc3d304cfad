"""ISP recognition: which mailbox provider runs a site, judged by its MX host names."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence

from policy.engine.settings import IspSettings

OTHER = "other"


class IspCatalog:
    """Maps MX host sets to ISP names; the first ISP (in config order) with a matching pattern wins.

    Everything unmatched is `other`. Results are cached per MX set because the same few sites ask
    thousands of times a second.
    """

    def __init__(self, isps: Mapping[str, IspSettings], cache_size: int = 65536) -> None:
        self._isps = dict(isps)
        self._patterns = [(name, re.compile("|".join(fnmatch.translate(p.lower()) for p in s.mx)))
                          for name, s in self._isps.items() if s.mx and name != OTHER]
        self._other = self._isps.get(OTHER, IspSettings())
        self._cache: dict[tuple[str, ...], str] = {}
        self._cache_size = cache_size

    @property
    def names(self) -> list[str]:
        """Configured ISP names, `other` last."""
        return [n for n in self._isps if n != OTHER] + [OTHER]

    def settings(self, isp: str) -> IspSettings:
        return self._isps.get(isp, self._other)

    def recognise(self, mx_hosts: Sequence[str]) -> str:
        key = tuple(mx_hosts)
        found = self._cache.get(key)
        if found is None:
            found = self._match(key)
            if len(self._cache) >= self._cache_size:
                self._cache.clear()
            self._cache[key] = found
        return found

    def _match(self, mx_hosts: tuple[str, ...]) -> str:
        hosts = [h.lower().rstrip(".") for h in mx_hosts]
        for name, pattern in self._patterns:
            if any(pattern.fullmatch(h) for h in hosts):
                return name
        return OTHER
