"""Run by test_store.py as a separate process, to prove atomicity across processes.

usage: python -m tests.policy.store_worker URL PREFIX incr|take N START_FILE
Waits until START_FILE exists (so every worker starts together), then either increments one
record N times or takes single messages from one bucket N times; prints what it got.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

from policy.engine.bucket import UNLIMITED, BucketSpec, TakePlan
from policy.store import open_store


async def main(url: str, prefix: str, mode: str, n: int, start_file: str) -> None:
    store = open_store(url, prefix=prefix)
    while not os.path.exists(start_file):
        time.sleep(0.005)
    got = 0
    if mode == "incr":
        for _ in range(n):
            await store.update("health", "counter", lambda old: {"n": (old or {"n": 0})["n"] + 1})
            got += 1
    else:
        spec = BucketSpec("ip|shared|google", rate=0.0, capacity=150.0, daily_cap=UNLIMITED)
        plan = TakePlan((), (("shared", (spec,)),), 1, 1)
        for _ in range(n):
            [result] = await store.take([plan], 1000.0)
            got += result.total
    await store.close()
    print(got)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]))
