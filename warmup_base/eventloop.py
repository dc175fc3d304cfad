"""The event loop both daemons run on: uvloop where it is installed (Linux), else asyncio's own.

uvloop's loop, transports and timers are C. Under the side-by-side throughput benchmark policyd
used 56-62 us of CPU per relayed message on it, against 63-73 us on asyncio's selector loop
(alternating runs). Both loops behave the same for everything the daemons use."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:  # optional: the daemons run on the standard loop too
        return asyncio.run(main)
    return uvloop.run(main)


__all__ = ["run"]
