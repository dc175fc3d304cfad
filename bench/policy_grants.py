#!/usr/bin/env python3
"""Grant decisions per second through the real protocol, for the SQLite and Redis backends.

Starts a real `policyd serve` process per backend (and a throw-away `redis-server` on a loopback
port for the Redis run), then drives it with PolicyClient the way busy MTA site lanes do: many
small grant requests (1-3 messages each) over several ISPs, source IPs and domains, in batches,
with feedback for what was granted. Prints calls/s, grant decisions/s (requests answered),
messages granted/s and call latency. Not a pass/fail test; the target is that the policy path
never limits the MTA's throughput target (>= 300 msgs/s with many small grants).

usage: python bench/policy_grants.py [--seconds 5] [--clients 4] [--batches 1,8] [--backends sqlite,redis]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from warmup_base.policy_protocol.client import PolicyClient  # noqa: E402
from warmup_base.policy_protocol.model import GrantRequest, Outcome  # noqa: E402

SITES = {
    "gmail.com": ("gmail-smtp-in.l.google.com",),
    "yahoo.com": ("mta5.am0.yahoodns.net",),
    "outlook.com": ("outlook-com.olc.protection.outlook.com",),
    "example.org": ("mx.example.org",),
}
SOURCES = ("ip1", "ip2", "ip3", "ip4")
DOMAINS = ("news.example.test", "shop.example.test", "mail.example.test")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"process exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on port {port}")


def write_config(workdir: Path, port: int, state: str) -> Path:
    # Volumes far above what the bench can ask for: every decision goes the whole way (pair states,
    # window, buckets, atomic take) and most grant something.
    path = workdir / "policy.toml"
    path.write_text(f"""
[policyd]
listen = "127.0.0.1:{port}"
state = "{state}"
state_prefix = "bench{os.getpid()}:"
include = ["{REPO / 'conf' / 'isps.toml'}"]
log_level = "warning"
[warmup]
ip_schedule = "big"
domain_schedule = "big"
burst = "10m"
[schedules.big]
days = [50000000]
""")
    return path


async def drive(port: int, seconds: float, clients: int, batch: int, feedback: bool,
                shared: bool) -> dict[str, float]:
    calls = decisions = granted = 0
    one_client = PolicyClient(f"127.0.0.1:{port}", request_timeout=5.0)
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def lane(seed: int) -> None:
        nonlocal calls, decisions, granted
        rng = random.Random(seed)
        client = one_client if shared else PolicyClient(f"127.0.0.1:{port}", request_timeout=5.0)
        while time.perf_counter() < deadline:
            requests = []
            for _ in range(batch):
                site = rng.choice(list(SITES))
                requests.append(GrantRequest(site, SITES[site], "default", SOURCES, "marketing", rng.choice(DOMAINS),
                                             "tenant", rng.randint(1, 3)))
            started = time.perf_counter()
            leases = await client.request(requests)
            latencies.append(time.perf_counter() - started)
            if not client.available:
                raise SystemExit("policyd stopped answering")
            calls += 1
            decisions += len(requests)
            got = [lease for lease in leases if lease.count]
            granted += sum(lease.count for lease in got)
            if feedback:
                await client.feedback([Outcome(lease.site, SITES[lease.site], lease.source, lease.sending_domain,
                                               "tenant", "marketing", "delivered", "", 250, "2.0.0", lease.count)
                                       for lease in got])
        if client is not one_client:
            await client.close()

    started = time.perf_counter()
    await asyncio.gather(*[lane(i) for i in range(clients)])
    await one_client.close()
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {"calls": calls / elapsed, "decisions": decisions / elapsed, "messages": granted / elapsed,
            "p50": statistics.median(latencies) * 1000, "p99": latencies[int(len(latencies) * 0.99)] * 1000}


def start_redis(workdir: Path) -> tuple[subprocess.Popen[bytes], str] | None:
    binary = shutil.which("redis-server")
    if binary is None:
        print("redis: skipped (redis-server not installed: apt-get install -y redis-server)")
        return None
    port = free_port()
    process = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no", "--dir", str(workdir)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, process)
    return process, f"redis://127.0.0.1:{port}/0"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per run")
    parser.add_argument("--clients", type=int, default=4, help="concurrent connections (MTA site lanes)")
    parser.add_argument("--batches", default="1,8", help="grant requests per call, comma-separated")
    parser.add_argument("--backends", default="sqlite,redis")
    parser.add_argument("--no-feedback", action="store_true", help="grant requests only")
    parser.add_argument("--shared-client", action="store_true",
                        help="all lanes share one PolicyClient (one connection), as in one MTA process")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    print(f"lanes share one connection: {args.shared_client}; feedback: {not args.no_feedback}")
    print(f"{'backend':8} {'batch':>5} {'clients':>7} {'calls/s':>9} {'decisions/s':>12} {'msgs/s':>9} "
          f"{'p50 ms':>7} {'p99 ms':>7}")
    for backend in args.backends.split(","):
        with tempfile.TemporaryDirectory(prefix="policy-bench") as tmp:
            workdir = Path(tmp)
            redis = None
            if backend == "redis":
                redis = start_redis(workdir)
                if redis is None:
                    continue
                state = redis[1]
            else:
                state = f"sqlite://{workdir / 'policy.db'}"
            for batch in (int(b) for b in args.batches.split(",")):
                port = free_port()
                daemon = subprocess.Popen([sys.executable, "-m", "policy.cli", "serve", "--config",
                                           str(write_config(workdir, port, state))], cwd=REPO, env=env)
                try:
                    wait_port(port, daemon)
                    r = asyncio.run(drive(port, args.seconds, args.clients, batch, not args.no_feedback,
                                          args.shared_client))
                finally:
                    daemon.send_signal(signal.SIGTERM)
                    daemon.wait(30)
                print(f"{backend:8} {batch:>5} {args.clients:>7} {r['calls']:>9.0f} {r['decisions']:>12.0f} "
                      f"{r['messages']:>9.0f} {r['p50']:>7.2f} {r['p99']:>7.2f}", flush=True)
            if redis is not None:
                redis[0].terminate()
                redis[0].wait(10)


if __name__ == "__main__":
    main()
