#!/usr/bin/env python3
"""Idle-connection starvation (issue 17, item 4): `mta serve` with its default connection limits
(1,000 per listener, 100 per address), N idle sessions held open from several untrusted loopback
addresses (each under the per-address limit), then a client in `trusted_networks` submits one
message at a time: how long from connect to the 250 after DATA. Not a pass/fail test.

    .venv/bin/python bench/idle_connections.py                  # 1,000 idle from 11 addresses
    .venv/bin/python bench/idle_connections.py --idle 1050 --tries 20

Before the fix every new client, trusted or not, got `421 4.7.0 too many connections` for as
long as the idle sessions were held (command timeout: 5 minutes). The script raises its own
open-file limit (it holds N sockets; the daemon raises its own).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from tests.mta.proc import MtaProcess  # noqa: E402
from tests.support.receiver import free_port  # noqa: E402
from tests.support.tomlw import dumps  # noqa: E402

MESSAGE = b"From: <app@sender.example>\r\nTo: <user@example.test>\r\nSubject: bench\r\n\r\nHello.\r\n.\r\n"


async def reply(reader: asyncio.StreamReader) -> bytes:
    while True:
        line = await reader.readline()
        if not line or line[3:4] != b"-":
            return line


async def hold_idle(host: str, port: int, source: str) -> tuple[asyncio.StreamWriter | None, bytes]:
    try:
        reader, writer = await asyncio.open_connection(host, port, local_addr=(source, 0))
    except OSError as exc:
        return None, str(exc).encode()
    greeting = await reply(reader)
    if greeting.startswith(b"220"):
        writer.write(b"EHLO idle.example\r\n")
        await reply(reader)
    return writer, greeting


async def submit(host: str, port: int) -> tuple[float, bytes]:
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection(host, port, local_addr=("127.0.0.1", 0))
    last = await reply(reader)
    if last.startswith(b"220"):
        for cmd in (b"EHLO app.example", b"MAIL FROM:<app@sender.example>", b"RCPT TO:<user@example.test>",
                    b"DATA"):
            writer.write(cmd + b"\r\n")
            last = await reply(reader)
            if last[:1] not in (b"2", b"3"):
                break
        else:
            writer.write(MESSAGE)
            last = await reply(reader)
    elapsed = time.perf_counter() - started
    writer.close()
    return elapsed, last.strip()


async def run(args: argparse.Namespace, host: str, port: int) -> dict:
    sources = [f"127.0.7.{i + 1}" for i in range(args.addresses)]
    t0 = time.perf_counter()
    held = await asyncio.gather(*(hold_idle(host, port, sources[i % len(sources)]) for i in range(args.idle)))
    open_seconds = time.perf_counter() - t0
    greeted = sum(1 for _w, g in held if g.startswith(b"220"))
    await asyncio.sleep(1.0)
    times, replies = [], []
    for _ in range(args.tries):
        elapsed, last = await submit(host, port)
        times.append(elapsed)
        replies.append(last.decode(errors="replace"))
        await asyncio.sleep(0.1)
    for w, _g in held:
        if w is not None:
            w.close()
    ok = sum(1 for r in replies if r.startswith("250"))
    return {"idle_attempted": args.idle, "addresses": args.addresses, "idle_greeted": greeted,
            "open_seconds": round(open_seconds, 2), "trusted_tries": args.tries, "trusted_250": ok,
            "trusted_seconds_median": round(statistics.median(times), 4),
            "trusted_seconds_max": round(max(times), 4), "replies": sorted(set(replies))[:5]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--idle", type=int, default=1000)
    ap.add_argument("--addresses", type=int, default=11)
    ap.add_argument("--tries", type=int, default=10)
    ap.add_argument("--json", default=os.path.join(REPO, "var", "bench", "idle_connections.json"))
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, args.idle + 1024)), hard))
    tmp = tempfile.mkdtemp(prefix="idle-bench-")
    port, dead_dns = free_port(["127.0.0.1"]), free_port(["127.0.0.1"])
    cfg = {"mta": {"hostname": "mta.bench.example", "spool_dir": os.path.join(tmp, "spool"), "log_level": "warning"},
           "submission": {"listen": [f"127.0.0.1:{port}"], "trusted_networks": ["127.0.0.1/32"]},
           "inbound": {"listen": [], "bounce_domain": "bounces.bench.example", "verp_secret": "x"},
           "dns": {"nameservers": [f"127.0.0.1:{dead_dns}"], "timeout": 1}}
    path = os.path.join(tmp, "mta.toml")
    with open(path, "w") as f:
        f.write(dumps(cfg))
    proc = MtaProcess(path, os.path.join(tmp, "mta.log")).start(("127.0.0.1", port))
    try:
        result = asyncio.run(run(args, "127.0.0.1", port))
    finally:
        proc.terminate()
    result["machine"] = subprocess.run(["uname", "-srm"], capture_output=True, text=True).stdout.strip()
    print(json.dumps(result, indent=2))
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
