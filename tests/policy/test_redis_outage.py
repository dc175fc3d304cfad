"""Redis going away under a running policyd: error replies, the client's fallback, and recovery."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from policy.engine import Policy
from policy.server import PolicyServer
from policy.service import PolicyService
from policy.store.redis_store import RedisStore
from tests.policy.conftest import free_port, make_settings
from tests.support.redisserver import start_redis
from tests.support.waiting import until
from warmup_base.policy_protocol.client import PolicyClient
from warmup_base.policy_protocol.model import GrantRequest

GOOGLE = ("gmail-smtp-in.l.google.com",)


async def test_grants_stop_while_redis_is_down_and_resume_when_it_is_back(tmp_path: Path,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
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
        with caplog.at_level(logging.WARNING, "policy.client"):
            marketing, transactional = await client.request([ask(), ask("transactional")])
        assert marketing.count == 0 and transactional.count == 1      # the floor only
        # policyd answered with an error at once (the client did not have to give up waiting on it)
        [down] = [r.getMessage() for r in caplog.records if "policyd unavailable" in r.getMessage()]
        assert "Redis state" in down and "did not answer" not in down, down
        redis = start_redis(port, tmp_path)                          # empty: its state was lost

        async def granted() -> bool:
            return sum(lease.count for lease in await client.request([ask()])) == 1
        await until(granted, "granting again", timeout=30)      # after the client's retry interval
        assert client.available
    finally:
        await client.close()
        await server.stop(1.0)
        await store.close()
        redis.terminate()
        redis.wait(10)
