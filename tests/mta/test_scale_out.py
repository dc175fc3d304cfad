"""Two MTA nodes, each with its own policyd, sharing one Redis: together they never send more to
one (source IP, ISP) than its cluster-wide warm-up limit. All real processes."""

from __future__ import annotations

import asyncio
import json
import os

import aiosmtplib

from tests.mta.conftest import base_config, message, write_config
from tests.mta.policyd import ONE_SOURCE, Policyd, isp_domains
from tests.mta.proc import MtaProcess, run_cli
from tests.support.receiver import free_port
from tests.support.redisserver import start_redis


async def test_two_nodes_share_one_cluster_wide_limit(tmp_path, world, dns_server, mx_port):
    google, _yahoo = isp_domains(world, dns_server)
    redis_port = free_port(["127.0.0.1"])
    redis = start_redis(redis_port, tmp_path)
    nodes: list[tuple[MtaProcess, Policyd]] = []
    submits: list[tuple[str, int, int]] = []
    daily_cap = 12
    try:
        for n in range(2):
            node_dir = os.path.join(tmp_path, f"node{n}")
            os.makedirs(node_dir)
            policyd = Policyd(node_dir, {"policyd": {"state": f"redis://127.0.0.1:{redis_port}/0"},
                                         "schedules": {"test": {"days": [daily_cap]}}}).start()
            cfg = base_config(node_dir, dns_server, mx_port, egress=ONE_SOURCE,
                              policy={"address": policyd.address}, mta={"log_level": "warning"})
            path = write_config(node_dir, cfg)
            host, port = cfg["submission"]["listen"][0].rsplit(":", 1)
            proc = MtaProcess(path, os.path.join(node_dir, "mta.log")).start((host, int(port)))
            nodes.append((proc, policyd))
            submits.append((host, int(port), n))

        async def submit(host: str, port: int, node: int) -> None:
            async with aiosmtplib.SMTP(hostname=host, port=port, start_tls=False) as smtp:
                for i in range(20):
                    await smtp.sendmail("a@sender.example", [f"n{node}u{i}@gmail.example"], message().encode())

        # Each node alone would send its full daily cap (12): with shared state they send 12 together.
        await asyncio.gather(*(submit(*s) for s in submits))
        await google.await_for(daily_cap, timeout=30)
        await asyncio.sleep(4)      # several lease rounds on both nodes: nothing more may go out
        assert google.count() == daily_cap
        queued = 0
        for proc, _p in nodes:
            assert proc.terminate() == 0
            stats = json.loads(run_cli("queue", "stats", "--json", "--config", proc.config_path).stdout)
            queued += stats["recipients"]
        assert queued == 40 - daily_cap      # the rest waits in the queues; nothing bounced
    finally:
        for proc, policyd in nodes:
            if proc.proc and proc.proc.poll() is None:
                proc.kill9()
            policyd.stop()
        redis.terminate()
        redis.wait(10)
