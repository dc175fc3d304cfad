"""HTTP injection beside SMTP injection on the same daemon, and the API's acceptance latency at a
fixed rate.

    .venv/bin/python bench/api_bench.py                 # 5,000 msgs per closed-loop run, p95 at 300/s for 30 s
    .venv/bin/python bench/api_bench.py --n 20000 --rate 300 --duration 60

Runs `mta serve` (this checkout's .venv) as a process with a real spool (fsync on), the test DNS
server and an SMTP sink process (tests/support/sinkproc.py) on loopback, so accepted mail is also
delivered while the clients inject. Measures, one after the other on the same daemon:

- SMTP: `--sessions` connections, each sending messages back to back (MAIL/RCPT/DATA per message,
  one connection kept for all), msgs/s until the 250 after DATA;
- HTTP single: `--sessions` keep-alive connections, POST /v1/messages back to back, until the 202;
- HTTP batch: POST /v1/messages/batch with `--batch` messages each, `--sessions` concurrent;
- HTTP open loop, once the mail of the runs above is delivered: POST /v1/messages at `--rate`
  per second for `--duration` seconds (new requests go out on time whatever the answers do),
  p50/p95/p99 request-to-202 latency (these messages are delivered meanwhile, as in production).

Message size ~2 KB. The clients run in this process and share the machine with the daemon: on 2
cores the figures are a floor of what the MTA does alone. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import aiohttp

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from tests.support.dnsserver import DnsTestServer  # noqa: E402
from tests.support.receiver import free_port  # noqa: E402

TEXT = "The quick brown fox jumps over the lazy dog; pack my box with five dozen jugs.\n" * 25
CONFIG = """
[mta]
hostname = "mta.bench.test"
spool_dir = "{spool}"
log_level = "warning"
min_free_space = "50M"
[submission]
listen = ["127.0.0.1:{smtp}"]
trusted_networks = ["127.0.0.0/8"]
[inbound]
listen = ["127.0.0.1:{inbound}"]
bounce_domain = "bounces.bench.test"
verp_secret = "bench"
[dns]
nameservers = ["{dns}"]
[delivery]
port = {sink_port}
[api]
listen = "127.0.0.1:{api}"
"""


def mime(i: int, tag: str) -> bytes:
    return (f"From: <app@sender.bench.test>\r\nTo: <user{i}@dest.bench.test>\r\nSubject: {tag}-{i}\r\n\r\n"
            + TEXT.replace("\n", "\r\n")).encode()


def http_message(i: int, tag: str) -> dict[str, object]:
    return {"from": "app@sender.bench.test", "to": f"user{i}@dest.bench.test", "subject": f"{tag}-{i}",
            "text": TEXT}


async def smtp_reply(reader: asyncio.StreamReader) -> int:
    while True:
        line = await reader.readline()
        if len(line) < 4:
            raise ConnectionError("closed")
        if line[3:4] != b"-":
            return int(line[:3])


async def smtp_run(port: int, n: int, sessions: int) -> float:
    counter = iter(range(n))

    async def session() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await smtp_reply(reader)
        writer.write(b"EHLO bench.test\r\n")
        await smtp_reply(reader)
        for i in counter:
            body = mime(i, "smtp").replace(b"\r\n.", b"\r\n..")
            writer.write(b"MAIL FROM:<app@sender.bench.test>\r\n"
                         + f"RCPT TO:<user{i}@dest.bench.test>\r\n".encode() + b"DATA\r\n")
            codes = [await smtp_reply(reader) for _ in range(3)]
            writer.write(body + b"\r\n.\r\n")
            codes.append(await smtp_reply(reader))
            if codes != [250, 250, 354, 250]:
                raise RuntimeError(f"SMTP refused: {codes}")
        writer.write(b"QUIT\r\n")
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(session() for _ in range(sessions)))
    return n / (time.perf_counter() - started)


async def http_single(http: aiohttp.ClientSession, base: str, n: int, sessions: int) -> float:
    counter = iter(range(n))

    async def session() -> None:
        for i in counter:
            async with http.post(base + "/v1/messages", json=http_message(i, "http")) as resp:
                if resp.status != 202:
                    raise RuntimeError(f"HTTP {resp.status}: {await resp.text()}")
                await resp.read()

    started = time.perf_counter()
    await asyncio.gather(*(session() for _ in range(sessions)))
    return n / (time.perf_counter() - started)


async def http_batch(http: aiohttp.ClientSession, base: str, n: int, sessions: int, size: int) -> float:
    batches = iter(range(0, n, size))

    async def session() -> None:
        for start in batches:
            body = {"messages": [http_message(i, "batch") for i in range(start, min(n, start + size))]}
            async with http.post(base + "/v1/messages/batch", json=body) as resp:
                answer = await resp.json()
                if resp.status != 200 or answer["accepted"] != len(body["messages"]):
                    raise RuntimeError(f"batch: {resp.status} {str(answer)[:300]}")

    started = time.perf_counter()
    await asyncio.gather(*(session() for _ in range(sessions)))
    return n / (time.perf_counter() - started)


async def http_open_loop(http: aiohttp.ClientSession, base: str, rate: float, duration: float,
                         make_message: Callable[[int], dict[str, Any]] | None = None) -> dict[str, float]:
    """POST /v1/messages at `rate` per second for `duration` seconds; request-to-202 quantiles."""
    make_message = make_message or (lambda i: http_message(i, "open"))
    latencies: list[float] = []
    errors = 0

    async def one(i: int) -> None:
        nonlocal errors
        started = time.perf_counter()
        try:
            async with http.post(base + "/v1/messages", json=make_message(i)) as resp:
                await resp.read()
                if resp.status != 202:
                    errors += 1
                    return
        except aiohttp.ClientError:
            errors += 1
            return
        latencies.append(time.perf_counter() - started)

    tasks = []
    t0 = time.perf_counter()
    total = int(rate * duration)
    for i in range(total):
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.get_running_loop().create_task(one(i)))
    await asyncio.gather(*tasks)
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    return {"sent": total, "errors": errors, "p50_ms": round(q[49] * 1000, 2), "p95_ms": round(q[94] * 1000, 2),
            "p99_ms": round(q[98] * 1000, 2), "max_ms": round(max(latencies, default=0) * 1000, 2)}


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("mta exited at start")
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("mta did not start")


async def drained(sink_file: str, expected: int, timeout: float = 180.0) -> int:
    """Waits until the sink has received `expected` messages (the closed-loop runs' mail is
    delivered), so the open-loop run measures acceptance without a backlog being sent beside it."""
    deadline = time.monotonic() + timeout
    got = 0
    while time.monotonic() < deadline:
        try:
            with open(sink_file, "rb") as f:
                got = sum(1 for _ in f)
        except FileNotFoundError:
            got = 0
        if got >= expected:
            break
        await asyncio.sleep(0.5)
    return got


async def measure(args: argparse.Namespace, smtp_port: int, api_port: int, key: str, sink_file: str
                  ) -> dict[str, object]:
    base = f"http://127.0.0.1:{api_port}"
    conn = aiohttp.TCPConnector(limit=max(args.sessions, 64))
    async with aiohttp.ClientSession(connector=conn, headers={"Authorization": f"Bearer {key}"}) as http:
        await http_single(http, base, 200, args.sessions)          # warm-up
        results: dict[str, object] = {
            "smtp_msgs_per_s": round(await smtp_run(smtp_port, args.n, args.sessions), 1),
            "http_single_msgs_per_s": round(await http_single(http, base, args.n, args.sessions), 1),
            "http_batch_msgs_per_s": round(await http_batch(http, base, args.n, max(1, args.sessions // 4),
                                                            args.batch), 1),
        }
        results["delivered_before_open_loop"] = await drained(sink_file, 200 + 3 * args.n)
        results["http_open_loop"] = await http_open_loop(http, base, args.rate, args.duration)
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=5000, help="messages per closed-loop run")
    ap.add_argument("--sessions", type=int, default=16, help="concurrent connections")
    ap.add_argument("--batch", type=int, default=100, help="messages per batch request")
    ap.add_argument("--rate", type=float, default=300.0)
    ap.add_argument("--duration", type=float, default=30.0)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="api-bench-")
    sink_port = free_port(["127.0.1.1"])
    ports = {"smtp": free_port(["127.0.0.1"]), "inbound": free_port(["127.0.0.1"]), "api": free_port(["127.0.0.1"])}
    py = os.path.join(REPO, ".venv", "bin", "python")
    env = {**os.environ, "PYTHONPATH": REPO}
    with DnsTestServer() as dns:
        dns.mx("dest.bench.test", (10, "mx.dest.bench.test"))
        dns.address("mx.dest.bench.test", "127.0.1.1")
        config = os.path.join(tmp, "mta.toml")
        with open(config, "w") as f:
            f.write(CONFIG.format(spool=os.path.join(tmp, "spool"), dns=dns.nameserver, sink_port=sink_port, **ports))
        sink = subprocess.Popen([py, "-m", "tests.support.sinkproc", "--listen", f"127.0.1.1:{sink_port}",
                                 "--out", os.path.join(tmp, "sink.txt")], cwd=REPO, env=env)
        created = subprocess.run([py, "-m", "mta.cli", "api-key", "create", "--config", config, "--tenant", "bench"],
                                 capture_output=True, text=True, check=True, cwd=REPO, env=env)
        key = created.stdout.strip().splitlines()[-1]
        log = open(os.path.join(tmp, "mta.log"), "wb")  # noqa: SIM115 (the daemon's stderr, closed below)
        mta = subprocess.Popen([py, "-m", "mta.cli", "serve", "--config", config], cwd=REPO, env=env, stderr=log)
        try:
            wait_port(ports["api"], mta)
            try:
                import uvloop
                runner = uvloop.run
            except ImportError:
                runner = asyncio.run
            results = runner(measure(args, ports["smtp"], ports["api"], key, os.path.join(tmp, "sink.txt")))
        finally:
            mta.terminate()
            mta.wait(60)
            sink.terminate()
            sink.wait(10)
            log.close()
    results.update({"n": args.n, "sessions": args.sessions, "batch": args.batch, "rate": args.rate,
                    "duration_s": args.duration, "cores": os.cpu_count(), "tmp": tmp})
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
