"""Open and click tracking: redirects per second from the tracking listener, and what tracking
costs on the acceptance path (p95 at a fixed rate with tracking off, then on).

    .venv/bin/python bench/tracking.py                          # 20,000 redirects, 300 msgs/s for 30 s each way
    .venv/bin/python bench/tracking.py --clicks 50000 --rate 300 --duration 60

Runs `mta serve` (this checkout's .venv) as a process with a real spool (fsync on), tracking on
for the marketing stream, the test DNS server and an SMTP sink process on loopback (bench/api_bench.py
does the same for the API). Measures, one after the other on the same daemon:

- redirects: `--sessions` keep-alive clients GET /c/<token> back to back (a valid token each, 302
  and a `clicked` event each), requests per second;
- acceptance: POST /v1/messages at `--rate` per second for `--duration` seconds, an HTML message
  with `--links` links, first with `"track": false`, then tracked (links rewritten, a pixel added,
  before the DKIM-less spool write); p50/p95/p99 request-to-202 latency of each.

The clients share the machine with the daemon: on 2 cores the figures are a floor. Prints one
JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time

import aiohttp

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "bench"))

from api_bench import CONFIG, drained, http_open_loop, wait_port  # noqa: E402

from mta.tracking.tokens import CLICK, TrackingTokens  # noqa: E402
from tests.support.dnsserver import DnsTestServer  # noqa: E402
from tests.support.receiver import free_port  # noqa: E402

SECRET = "bench-tracking-secret"
TRACKING = """
[tracking]
enabled = true
listen = "127.0.0.1:{tracking}"
base_url = "http://127.0.0.1:{tracking}"
streams = ["marketing"]
secret = "{secret}"
"""


def html(i: int, links: int) -> str:
    anchors = "".join(f'<p><a href="https://shop.bench.test/item/{k}?ref=news&amp;n={i}">Item {k}</a></p>'
                      for k in range(links))
    return f"<html><body><h1>Offer {i}</h1>{anchors}<p>{'Lorem ipsum dolor sit amet. ' * 40}</p></body></html>"


async def redirects(base: str, n: int, sessions: int) -> dict[str, float]:
    tokens = TrackingTokens([SECRET.encode()])
    urls = [f"{base}/c/" + tokens.issue(CLICK, queue_id=f"BENCH{i:06d}", recipient=f"user{i}@dest.bench.test",
                                       campaign="bench", url=f"https://shop.bench.test/item/{i % 7}")
            for i in range(min(n, 5000))]
    errors = 0
    done = 0

    async def session(http: aiohttp.ClientSession, k: int) -> None:
        nonlocal errors, done
        for i in range(k, n, sessions):
            async with http.get(urls[i % len(urls)], allow_redirects=False) as resp:
                await resp.read()
                if resp.status != 302:
                    errors += 1
            done += 1

    conn = aiohttp.TCPConnector(limit=sessions)
    async with aiohttp.ClientSession(connector=conn, headers={"User-Agent": "Mozilla/5.0 (bench)"}) as http:
        await asyncio.gather(*(session(http, k) for k in range(min(sessions, 8))))     # warm-up
        done = 0
        t0 = time.perf_counter()
        await asyncio.gather(*(session(http, k) for k in range(sessions)))
        elapsed = time.perf_counter() - t0
    return {"requests": done, "errors": errors, "per_s": round(done / elapsed, 1)}


async def open_loop(http: aiohttp.ClientSession, base: str, rate: float, duration: float, links: int,
                    track: bool) -> dict[str, float]:
    def message(i: int) -> dict[str, object]:
        return {"from": "news@sender.bench.test", "to": f"user{i}@dest.bench.test", "subject": f"offer {i}",
                "html": html(i, links), "stream": "marketing", "track": track}

    return await http_open_loop(http, base, rate, duration, message)


async def measure(args: argparse.Namespace, api_port: int, tracking_port: int, key: str, sink: str
                  ) -> dict[str, object]:
    results: dict[str, object] = {
        "redirects": await redirects(f"http://127.0.0.1:{tracking_port}", args.clicks, args.sessions)}
    base = f"http://127.0.0.1:{api_port}"
    conn = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=conn, headers={"Authorization": f"Bearer {key}"}) as http:
        await open_loop(http, base, args.rate, 2.0, args.links, True)              # warm-up
        sent = int(args.rate * 2.0)
        for name, track in (("accept_untracked", False), ("accept_tracked", True)):
            await drained(sink, sent)
            results[name] = await open_loop(http, base, args.rate, args.duration, args.links, track)
            sent += int(args.rate * args.duration)
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clicks", type=int, default=20000, help="tracked-link requests")
    ap.add_argument("--sessions", type=int, default=16, help="keep-alive clients for the redirects")
    ap.add_argument("--rate", type=float, default=300.0, help="messages per second, open loop")
    ap.add_argument("--duration", type=float, default=30.0, help="seconds per acceptance run")
    ap.add_argument("--links", type=int, default=10, help="links per HTML message")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="tracking-bench-")
    sink_port = free_port(["127.0.1.1"])
    ports = {"smtp": free_port(["127.0.0.1"]), "inbound": free_port(["127.0.0.1"]), "api": free_port(["127.0.0.1"])}
    tracking_port = free_port(["127.0.0.1"])
    py = os.path.join(REPO, ".venv", "bin", "python")
    env = {**os.environ, "PYTHONPATH": REPO}
    with DnsTestServer() as dns:
        dns.mx("dest.bench.test", (10, "mx.dest.bench.test"))
        dns.address("mx.dest.bench.test", "127.0.1.1")
        config = os.path.join(tmp, "mta.toml")
        with open(config, "w") as f:
            f.write(CONFIG.format(spool=os.path.join(tmp, "spool"), dns=dns.nameserver, sink_port=sink_port, **ports))
            f.write(TRACKING.format(tracking=tracking_port, secret=SECRET))
        sink_file = os.path.join(tmp, "sink.txt")
        sink = subprocess.Popen([py, "-m", "tests.support.sinkproc", "--listen", f"127.0.1.1:{sink_port}",
                                 "--out", sink_file], cwd=REPO, env=env)
        created = subprocess.run([py, "-m", "mta.cli", "api-key", "create", "--config", config, "--tenant", "bench"],
                                 capture_output=True, text=True, check=True, cwd=REPO, env=env)
        key = created.stdout.strip().splitlines()[-1]
        log = open(os.path.join(tmp, "mta.log"), "wb")  # noqa: SIM115 (the daemon's stderr, closed below)
        mta = subprocess.Popen([py, "-m", "mta.cli", "serve", "--config", config], cwd=REPO, env=env, stderr=log)
        try:
            wait_port(ports["api"], mta)
            wait_port(tracking_port, mta)
            results = asyncio.run(measure(args, ports["api"], tracking_port, key, sink_file))
        finally:
            mta.terminate()
            mta.wait(60)
            sink.terminate()
            sink.wait(10)
            log.close()
    results.update({"clicks": args.clicks, "sessions": args.sessions, "rate": args.rate, "duration_s": args.duration,
                    "links": args.links, "cores": os.cpu_count(), "load_avg": os.getloadavg()[0], "tmp": tmp})
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
