#!/usr/bin/env python3
"""Backlog scale check: a spool with N queued messages (default 1,000,000 x 20 KB), then
`mta serve` started on it. Measures how long until it greets and until it accepts a message
(250), and its RSS while it works through the backlog. Not a pass/fail test.

    .venv/bin/python bench/backlog.py --n 1000000 --dir /work/backlog      # ~21 GB of disk
    .venv/bin/python bench/backlog.py --n 1000000 --dir /work/backlog --reuse --mode deliver

Modes: `down` (every destination's DNS fails: the daemon claims, defers and re-queues, the
worst case for churn) or `deliver` (destinations accept: the backlog drains into a sink).
The spool is filled with the spool's own insert code in large transactions, not over SMTP
(which would take an hour at 300 msgs/s and measure something else).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from mta.model import NewMessage  # noqa: E402
from mta.spool.ids import new_queue_id  # noqa: E402
from mta.spool.store import SpoolStore  # noqa: E402
from tests.support.dnsserver import DnsTestServer  # noqa: E402
from tests.support.receiver import Receiver, free_port  # noqa: E402
from tests.support.tomlw import dumps  # noqa: E402


def body_of(i: int, size: int) -> bytes:
    head = f"From: <app@sender.example>\r\nTo: <u{i}@x>\r\nSubject: backlog {i}\r\nMessage-ID: <{i}@bench>\r\n\r\n"
    line = ("0123456789abcdefghijklmnopqrstuvwxyz" * 2 + "\r\n").encode()
    filler = line * ((size - len(head)) // len(line) + 1)
    return head.encode() + filler[: max(0, size - len(head))]


def fill(spool_dir: str, n: int, size: int, domains: int) -> float:
    store = SpoolStore(spool_dir)
    store.db.execute("PRAGMA synchronous = NORMAL")   # filling only; the daemon runs with FULL
    t0 = time.monotonic()
    now = time.time()
    batch = 2000
    for start in range(0, n, batch):
        store.begin()
        for i in range(start, min(n, start + batch)):
            msg = NewMessage(queue_id=new_queue_id(), sender="app@sender.example",
                             recipients=[f"u{i}@d{i % domains}.backlog.test"], body=body_of(i, size), created=now,
                             stream="marketing", priority=5, tenant="", pool="default",
                             sending_domain="sender.example", header_message_id=f"<{i}@bench>")
            store.insert(msg, now)
        store.commit()
        if start % 100_000 == 0:
            print(f"  filled {start:,}/{n:,} in {time.monotonic() - t0:.0f}s", flush=True)
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    return time.monotonic() - t0


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def smtp_accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=5) as s:
            f = s.makefile("rwb")

            def cmd(line: bytes) -> bytes:
                if line:
                    f.write(line + b"\r\n")
                    f.flush()
                while True:
                    reply = f.readline()
                    if reply[3:4] != b"-":
                        return reply

            if not cmd(b"").startswith(b"220"):
                return False
            cmd(b"EHLO bench.example")
            cmd(b"MAIL FROM:<probe@sender.example>")
            cmd(b"RCPT TO:<probe@d0.backlog.test>")
            if not cmd(b"DATA").startswith(b"354"):
                return False
            return cmd(b"Subject: probe\r\n\r\nprobe\r\n.").startswith(b"250")
    except OSError:
        return False


def start_and_measure(config: str, submit: tuple[str, int], observe: float, log: str) -> dict:
    t0 = time.monotonic()
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "mta.cli", "serve", "--config", config], cwd=REPO,
                                stdout=out, stderr=out, env={**os.environ, "PYTHONPATH": REPO})
    greet = accept = None
    while time.monotonic() - t0 < 120 and proc.poll() is None:
        if greet is None:
            try:
                with socket.create_connection(submit, timeout=1) as s:
                    if s.recv(64).startswith(b"220"):
                        greet = time.monotonic() - t0
            except OSError:
                time.sleep(0.05)
                continue
        if smtp_accepts(*submit):
            accept = time.monotonic() - t0
            break
    samples = []
    end = time.monotonic() + observe
    while time.monotonic() < end and proc.poll() is None:
        samples.append(rss_mb(proc.pid))
        time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(120)
    return {"greeting_s": round(greet, 2) if greet else None, "first_250_s": round(accept, 2) if accept else None,
            "rss_peak_mb": round(max(samples), 1) if samples else None,
            "rss_last_mb": round(samples[-1], 1) if samples else None, "exit": rc}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--size", type=int, default=20 * 1024)
    p.add_argument("--domains", type=int, default=1000)
    p.add_argument("--dir", default=os.path.join(REPO, "var", "backlog"))
    p.add_argument("--mode", choices=("down", "deliver"), default="down")
    p.add_argument("--observe", type=float, default=60.0, help="seconds of RSS sampling after the first 250")
    p.add_argument("--reuse", action="store_true", help="keep an already filled spool")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args()

    spool = os.path.join(args.dir, "spool")
    result: dict = {"n": args.n, "size": args.size, "domains": args.domains, "mode": args.mode}
    if not args.reuse or not os.path.exists(os.path.join(spool, "queue.db")):
        shutil.rmtree(args.dir, ignore_errors=True)
        os.makedirs(spool)
        print(f"filling {args.n:,} messages of {args.size} bytes ...", flush=True)
        result["fill_s"] = round(fill(spool, args.n, args.size, args.domains), 1)
    result["spool_gb"] = round(sum(os.path.getsize(os.path.join(spool, f)) for f in os.listdir(spool)
                                   if f.startswith("queue.db")) / 1e9, 2)

    with DnsTestServer() as dns:
        mx_port = free_port(["127.0.1.1"])
        rx = None
        if args.mode == "deliver":
            rx = Receiver("127.0.1.1", mx_port).start()
            for d in range(args.domains):
                dns.mx(f"d{d}.backlog.test", (10, "mx.backlog.test"))
            dns.address("mx.backlog.test", "127.0.1.1")
        else:
            for d in range(args.domains):
                dns.servfail(f"d{d}.backlog.test")
        submit = ("127.0.0.1", free_port(["127.0.0.1"]))
        cfg = {
            "mta": {"hostname": "mta.bench.test", "spool_dir": spool, "log_level": "warning"},
            "submission": {"listen": [f"{submit[0]}:{submit[1]}"]},
            "inbound": {"listen": [], "bounce_domain": "bounces.bench.test"},
            "dns": {"nameservers": [dns.nameserver], "timeout": 1},
            "delivery": {"port": mx_port},
            "events": {"path": os.path.join(args.dir, "events.jsonl")},
        }
        config = os.path.join(args.dir, "mta.toml")
        with open(config, "w") as f:
            f.write(dumps(cfg))
        log = os.path.join(args.dir, "mta.log")
        print("first start on the backlog ...", flush=True)
        result["start"] = start_and_measure(config, submit, args.observe, log)
        print(json.dumps(result["start"]), flush=True)
        print("restart on the same backlog ...", flush=True)
        result["restart"] = start_and_measure(config, submit, args.observe, log)
        if rx is not None:
            result["delivered_during_runs"] = rx.count()
            rx.stop()
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    asyncio.set_event_loop_policy(None)
    sys.exit(main())
