"""Redis going away under a running policyd: error replies, the client's fallback, and recovery."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from policy.engine import Policy
from policy.server import PolicyServer
from policy.service import PolicyService
from policy.store.redis_store import RedisStore
from tests.policy.conftest import free_port, make_settings
from tests.support.redisserver import start_redis
from warmup_base.policy_protocol.client import PolicyClient
from warmup_base.policy_protocol.model import GrantRequest

GOOGLE = ("gmail-smtp-in.l.google.com",)


async def test_grants_stop_while_redis_is_down_and_resume_when_it_is_back(tmp_path: Path) -> None:
    port = free_port()
    redis = start_redis(port, tmp_path)
    store = RedisStore(f"redis://127.0.0.1:{port}/0", "outage:")
    service = PolicyService(Policy(make_settings()), store, time.time, cache_seconds=0.0)
    server = PolicyServer(service)
    [address] = await server.start(["127.0.0.1:0"])
    client = PolicyClient(address, transactional_floor=60, retry_interval=0.05)

    def ask(stream: str = "marketing") -> GrantRequest:
        return GrantRequest("gmail.com", GOOGLE, "default", ("ip1",), stream, "example.test", "t", 1)

    try:
        assert sum(lease.count for lease in await client.request([ask()])) == 1
        redis.terminate()
        redis.wait(10)
        started = time.monotonic()
        marketing, transactional = await client.request([ask(), ask("transactional")])
        assert time.monotonic() - started < 3
        assert marketing.count == 0 and transactional.count == 1      # the floor only
        redis = start_redis(port, tmp_path)                          # empty: its state was lost
        await asyncio.sleep(0.1)
        assert sum(lease.count for lease in await client.request([ask()])) == 1
        assert client.available
    finally:
        await client.close()
        await server.stop(1.0)
        await store.close()
        redis.terminate()
        redis.wait(10)
