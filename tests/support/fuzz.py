"""Property-based fuzzing with hypothesis: two sizes of one test, and servers on a loop of their own.

Every fuzz test runs twice over: a quick, derandomised run in the default test set (the same
examples every time, so CI stays deterministic), and a long random run under the `fuzz` marker
(`./scripts/test -m fuzz`). Use it as

    @fuzz_examples(quick=100, fuzz=20_000)
    def test_something(max_examples: int, quick: bool) -> None:
        @fuzz(max_examples, quick, st.binary(), ...)      # runs the property at once
        def check(data: bytes, ...) -> None: ...

`FUZZ_SCALE` (an environment variable, default 1) multiplies the `-m fuzz` counts, for a longer
run without editing tests. Each run prints (see it with `-s`) and, if `FUZZ_REPORT` names a file,
appends a line: the property, how many times it was called (examples generated, plus any
shrinking) and how long it took.
"""

from __future__ import annotations

import asyncio
import functools
import os
import socket
import struct
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis.strategies import SearchStrategy

T = TypeVar("T")

_SCALE = float(os.environ.get("FUZZ_SCALE", "1") or 1)


def fuzz_examples(quick: int, fuzz: int) -> pytest.MarkDecorator:
    """Parametrises a test with (max_examples, quick): `quick` by default, `fuzz` under -m fuzz."""
    return pytest.mark.parametrize(("max_examples", "quick"), [
        pytest.param(quick, True, id="quick"),
        pytest.param(max(1, int(fuzz * _SCALE)), False, id="fuzz",
                     marks=[pytest.mark.fuzz, pytest.mark.timeout(int(3600 * max(1.0, _SCALE)))]),
    ])


def fuzz_settings(max_examples: int, quick: bool) -> settings:
    """No example database (nothing written into the checkout), no deadline (the machine is shared:
    slowness is asserted by the tests themselves, generously), derandomised when quick."""
    return settings(
        max_examples=max_examples,
        derandomize=quick,
        database=None,
        deadline=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
                               HealthCheck.large_base_example],
    )


def fuzz(max_examples: int, quick: bool, *strategies: SearchStrategy[Any]) -> Callable[[Callable[..., None]], None]:
    """Runs `fn` as a hypothesis property over `strategies` now, and reports how much it ran."""
    def run(fn: Callable[..., None]) -> None:
        calls = 0

        @functools.wraps(fn)
        def counted(*args: Any, **kwargs: Any) -> None:
            nonlocal calls
            calls += 1
            fn(*args, **kwargs)

        started = time.perf_counter()
        try:
            fuzz_settings(max_examples, quick)(given(*strategies)(counted))()
        finally:
            test = os.environ.get("PYTEST_CURRENT_TEST", fn.__qualname__).split(" ")[0]
            took = time.perf_counter() - started
            line = f"[fuzz] {test}: {calls} calls ({max_examples} examples asked), {took:.1f} s"
            print(line)
            if os.environ.get("FUZZ_REPORT"):
                with open(os.environ["FUZZ_REPORT"], "a", encoding="utf-8") as report:
                    report.write(line + "\n")
    return run


class LoopThread:
    """An asyncio loop in a daemon thread: servers under test run there, while hypothesis drives
    plain blocking sockets from the test's thread (hypothesis does not run inside an event loop)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="fuzz-loop", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    def call(self, fn: Callable[[], Awaitable[T]], timeout: float = 30.0) -> T:
        async def wrapper() -> T:
            return await fn()
        return self.run(wrapper(), timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


def exchange(port: int, request: bytes, complete: Callable[[bytes], bool] | None = None) -> bytes:
    """Sends `request` to 127.0.0.1:`port`, ends the writing side and reads until the server
    closes (or `complete(data)` says the response is whole); then aborts the connection (RST, so
    tens of thousands of examples leave no TIME_WAIT behind)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        try:
            sock.sendall(request)
            sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass                    # the server answered and closed before reading it all: fine
        data = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
            if complete is not None and complete(data):
                break
        return data
    finally:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
