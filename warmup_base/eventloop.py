"""The event loop both daemons run on: uvloop where it is installed (Linux), else asyncio's own.

uvloop's loop, transports and timers are C: in policyd under the side-by-side throughput
benchmark, asyncio's selector loop and stream transports were about a third of the daemon's
samples. Both loops behave the same for everything the daemons use."""

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
