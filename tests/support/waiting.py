"""Waiting on conditions, not on the clock: a loaded machine (CI running other jobs) makes any fixed
sleep too short sometimes, while a condition with a generous deadline costs nothing when it holds."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


async def until(check: Callable[[], T | Awaitable[T]], what: str, timeout: float = 60.0,
                every: float = 0.1) -> T:
    """The first truthy value of `check()` (a function or a coroutine function), polled every
    `every` seconds; AssertionError naming `what` and the last value after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value: Any = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"after {timeout:g}s still not {what}: {value!r}")
        await asyncio.sleep(every)
