"""Webhooks and the Redis event stream under load, in-process, against real peers on loopback.

Prints, for each case: the cost of the event-log subscriber in the event loop (microseconds per
event: what acceptance and delivery pay), the worst event-loop lag while the sink works, and how
fast events reach the consumer (an aiohttp receiver in a subprocess, or a redis-server).

    .venv/bin/python bench/event_sinks.py [--events 50000] [--batch 100] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mta.events import Event  # noqa: E402
from mta.eventstream.redis_stream import RedisEventStream  # noqa: E402
from mta.metrics import Metrics  # noqa: E402
from mta.webhooks.config import WebhookEndpoint, validate_webhooks  # noqa: E402
from mta.webhooks.service import Webhooks  # noqa: E402
from tests.support.receiver import free_port  # noqa: E402
from tests.support.redisserver import start_redis  # noqa: E402

# A receiver that counts events and answers 204, in its own process (its CPU is not ours).
RECEIVER = r"""
import json, sys
from aiohttp import web
count = 0
async def hook(request):
    global count
    count += len(json.loads(await request.read())["events"])
    return web.Response(status=204)
async def stats(request):
    return web.json_response({"events": count})
app = web.Application()
app.router.add_post("/hooks", hook)
app.router.add_get("/stats", stats)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
"""


def make_event(i: int) -> Event:
    return Event("delivered", f"Q{i:010d}", f"user{i}@example.test", "app@sender.example", site="example.test",
                 mx="mx.example.test", source="ip1", source_ip="127.0.0.11", code=250, status="2.0.0",
                 text="2.0.0 Ok: queued as ABC", attempt=1, stream="transactional", tenant="acme",
                 sending_domain="sender.example", message_id=f"<{i}@sender.example>")


async def loop_lag(stop: asyncio.Event, worst: list[float]) -> None:
    while not stop.is_set():
        t = time.perf_counter()
        await asyncio.sleep(0.005)
        worst[0] = max(worst[0], time.perf_counter() - t - 0.005)


async def emit(sink_on_event, n: int, rate_chunk: int = 1000) -> float:  # type: ignore[no-untyped-def]
    """Emits n events in chunks (yielding between them, as a daemon does); returns the seconds spent
    inside the subscriber."""
    spent = 0.0
    for start in range(0, n, rate_chunk):
        t = time.perf_counter()
        for i in range(start, min(n, start + rate_chunk)):
            ev = make_event(i)
            ev.time = time.time()
            sink_on_event(ev)
        spent += time.perf_counter() - t
        await asyncio.sleep(0)
    return spent


async def bench_webhooks(n: int, batch: int, dead: bool) -> dict[str, float]:
    port = free_port(["127.0.0.1"])
    proc = None if dead else subprocess.Popen([sys.executable, "-c", RECEIVER, str(port)])
    spool = tempfile.mkdtemp(prefix="whbench")
    try:
        if proc is not None:
            await wait_port(port)
        secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
        eps = [WebhookEndpoint(url=f"http://127.0.0.1:{port}/hooks", secret=secret, batch_size=batch,
                               max_backlog=10 * n)]
        validate_webhooks(eps)
        hooks = Webhooks(eps, spool, Metrics())
        await hooks.start()
        stop, worst = asyncio.Event(), [0.0]
        lag = asyncio.get_running_loop().create_task(loop_lag(stop, worst))
        t0 = time.perf_counter()
        spent = await emit(hooks.on_event, n)
        delivered_s = 0.0
        if proc is not None:
            import aiohttp
            async with aiohttp.ClientSession() as s:
                while True:
                    async with s.get(f"http://127.0.0.1:{port}/stats") as r:
                        if (await r.json())["events"] >= n:
                            break
                    await asyncio.sleep(0.05)
            delivered_s = time.perf_counter() - t0
        else:
            await asyncio.sleep(2.0)        # the dead endpoint is tried meanwhile
        stop.set()
        await lag
        await hooks.stop()
        return {"events": n, "subscriber_us_per_event": spent / n * 1e6, "worst_loop_lag_ms": worst[0] * 1000,
                "events_per_s": n / delivered_s if delivered_s else 0.0}
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
        shutil.rmtree(spool, ignore_errors=True)


async def bench_redis(n: int) -> dict[str, float]:
    port = free_port(["127.0.0.1"])
    work = Path(tempfile.mkdtemp(prefix="rsbench"))
    proc = start_redis(port, work)
    try:
        sink = RedisEventStream(f"redis://127.0.0.1:{port}/0", "bench:events", 1_000_000, 2 * n, Metrics())
        sink.start()
        stop, worst = asyncio.Event(), [0.0]
        lag = asyncio.get_running_loop().create_task(loop_lag(stop, worst))
        t0 = time.perf_counter()
        spent = await emit(sink.on_event, n)
        while len(sink.buffer):
            await asyncio.sleep(0.01)
        took = time.perf_counter() - t0
        stop.set()
        await lag
        await sink.stop()
        return {"events": n, "subscriber_us_per_event": spent / n * 1e6, "worst_loop_lag_ms": worst[0] * 1000,
                "events_per_s": n / took}
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(work, ignore_errors=True)


async def wait_port(port: int) -> None:
    for _ in range(200):
        try:
            _r, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise RuntimeError("receiver did not start")


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    results = {
        "webhook_live": await bench_webhooks(args.events, args.batch, dead=False),
        "webhook_dead_endpoint": await bench_webhooks(args.events, args.batch, dead=True),
        "redis_stream": await bench_redis(args.events),
    }
    for name, r in results.items():
        print(f"{name:24s} " + "  ".join(f"{k}={v:,.1f}" for k, v in r.items()))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
