"""A closed-loop SMTP submitter in its own process, for soak runs:
`python -m tests.support.loadproc --server HOST:PORT --sessions N --duration S --out FILE --to DOMAIN`.

Each session sends back to back over one connection (reconnecting after errors) until the
duration is over or SIGTERM comes; with `--rate R`, the sessions together start at most R
messages a second (each session its share, evenly spaced). For every message that got its 250 after DATA, the message's
token (also its Subject) is appended to FILE at once: that file is the list of acknowledged mail.
Prints a JSON summary (acked, errors, worst latency) on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import time

FILLER = b"The quick brown fox jumps over the lazy dog; pack my box with five dozen jugs.\r\n" * 25


async def reply(reader: asyncio.StreamReader) -> int:
    while True:
        line = await reader.readline()
        if len(line) < 4:
            raise ConnectionError("connection closed")
        if line[3:4] != b"-":
            return int(line[:3])


async def session(host: str, port: int, tag: str, domain: str, out, stats: dict, stop: asyncio.Event,
                  gap: float = 0.0) -> None:
    n = 0
    next_at = time.monotonic()
    while not stop.is_set():
        writer = None
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
            if await reply(reader) != 220:
                raise ConnectionError("greeting")
            writer.write(b"EHLO load.test\r\n")
            await reply(reader)
            while not stop.is_set():
                if gap:
                    next_at = max(next_at + gap, time.monotonic() - gap)
                    await asyncio.sleep(max(0.0, next_at - time.monotonic()))
                n += 1
                token = f"{tag}-{n}"
                started = time.monotonic()
                writer.write(f"MAIL FROM:<load@sender.example>\r\nRCPT TO:<{token}@{domain}>\r\nDATA\r\n".encode())
                codes = [await reply(reader) for _ in range(3)]
                if codes[2] != 354:
                    stats["refused"] += 1
                    writer.write(b"RSET\r\n")
                    await reply(reader)
                    await asyncio.sleep(0.05)
                    continue
                writer.write(b"From: <load@sender.example>\r\nSubject: " + token.encode() + b"\r\n\r\n" + FILLER
                             + b".\r\n")
                code = await asyncio.wait_for(reply(reader), 60)
                if code == 250:
                    out.write(token.encode() + b"\n")
                    stats["acked"] += 1
                    stats["worst"] = max(stats["worst"], time.monotonic() - started)
                else:
                    stats["refused"] += 1
        except (OSError, ConnectionError, TimeoutError, ValueError):
            stats["errors"] += 1
            await asyncio.sleep(0.05)
        finally:
            if writer is not None:
                writer.close()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--sessions", type=int, default=10)
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--out", required=True)
    ap.add_argument("--to", default="example.test")
    ap.add_argument("--tag", default="m")
    ap.add_argument("--rate", type=float, default=0.0, help="messages per second over all sessions (0: no limit)")
    args = ap.parse_args()
    host, port = args.server.rsplit(":", 1)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.call_later(args.duration, stop.set)
    stats = {"acked": 0, "refused": 0, "errors": 0, "worst": 0.0}
    gap = args.sessions / args.rate if args.rate > 0 else 0.0
    with open(args.out, "ab", buffering=0) as out:
        await asyncio.gather(*(session(host, int(port), f"{args.tag}{i}", args.to, out, stats, stop, gap)
                               for i in range(args.sessions)))
    print(json.dumps(stats), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
