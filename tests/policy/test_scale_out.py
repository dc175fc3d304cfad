"""Scale-out: two policyd processes (one per MTA node) sharing one real Redis keep one cluster-wide limit."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

from tests.policy.conftest import REPO, RedisServer, free_port
from tests.policy.test_cli import wait_for_port
from warmup_base.policy_protocol.client import PolicyClient
from warmup_base.policy_protocol.model import GrantRequest

GOOGLE = ("gmail-smtp-in.l.google.com",)


def node_config(path: Path, port: int, redis_url: str) -> Path:
    # 200 a day with six hours of burst: 50 tokens per (IP, Google) now, and 0.01 more in five seconds
    path.write_text(f"""
[policyd]
listen = "127.0.0.1:{port}"
state = "{redis_url}"
state_prefix = "scaleout:"
include = ["{REPO / 'conf' / 'isps.toml'}"]
cache_seconds = "1s"
[warmup]
ip_schedule = "ip"
domain_schedule = ""
burst = "6h"
[schedules.ip]
days = [200]
""")
    return path


async def hammer(port: int, rounds: int) -> int:
    """Many small grant requests, as a busy MTA node sends them, from both of its source IPs' lanes."""
    client = PolicyClient(f"127.0.0.1:{port}")
    granted = 0
    for i in range(rounds):
        batch = [GrantRequest("gmail.com", GOOGLE, "default", ("ip1",), "marketing", f"d{i % 3}.test", "t",
                              1 + (i + j) % 3) for j in range(4)]
        leases = await client.request(batch)
        assert client.available, "policyd did not answer"
        granted += sum(lease.count for lease in leases)
    await client.close()
    return granted


def test_two_nodes_sharing_redis_never_exceed_the_per_ip_isp_limit_together(
        tmp_path: Path, redis_server: RedisServer, pythonpath_env: dict[str, str]) -> None:
    ports = [free_port(), free_port()]
    nodes = [subprocess.Popen([sys.executable, "-m", "policy.cli", "serve", "--config",
                               str(node_config(tmp_path / f"node{i}.toml", port, redis_server.url))],
                              cwd=REPO, env=pythonpath_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True)
             for i, port in enumerate(ports)]
    try:
        for port, node in zip(ports, nodes, strict=True):
            wait_for_port(port, node)

        async def both() -> list[int]:
            return list(await asyncio.gather(hammer(ports[0], 60), hammer(ports[1], 60)))

        per_node = asyncio.run(both())
        assert sum(per_node) == 50, per_node          # each asks for up to ~480; together they get the bucket
        assert all(n > 0 for n in per_node), per_node  # and both nodes really were serving
        for node in nodes:
            node.send_signal(signal.SIGTERM)
        assert [node.wait(15) for node in nodes] == [0, 0]
    finally:
        for node in nodes:
            if node.poll() is None:
                node.kill()
                node.wait()
