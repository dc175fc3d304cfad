"""A fast SMTP sink in its own process, for soak runs where an in-test receiver would compete with
the test for the GIL: `python -m tests.support.sinkproc --listen 127.0.1.1:PORT --out FILE`.

It speaks just enough ESMTP (EHLO with PIPELINING, MAIL, RCPT, DATA with dot-unstuffing, RSET,
NOOP, QUIT), accepts everything, and appends one line per received message to FILE: the value of
its `Subject:` header. Commands are handled in order, so pipelined clients work. `--delay` adds a
pause before the reply to DATA, to keep deliveries in flight.
"""

from __future__ import annotations

import argparse
import asyncio
import signal


class SinkProtocol(asyncio.Protocol):
    def __init__(self, out, delay: float) -> None:
        self.out = out
        self.delay = delay
        self.buffer = b""
        self.in_data = False
        self.data: list[bytes] = []
        self.transport: asyncio.Transport | None = None
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(b"220 sink.test ESMTP\r\n")
        self.task = asyncio.get_running_loop().create_task(self.run())

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\r\n")
        for line in lines:
            self.queue.put_nowait(line)

    def connection_lost(self, exc) -> None:
        self.queue.put_nowait(None)

    async def run(self) -> None:
        assert self.transport is not None
        while True:
            line = await self.queue.get()
            if line is None:
                return
            if self.in_data:
                if line == b".":
                    self.in_data = False
                    self.record()
                    if self.delay:
                        await asyncio.sleep(self.delay)
                    self.transport.write(b"250 2.0.0 Ok\r\n")
                else:
                    self.data.append(line[1:] if line.startswith(b".") else line)
                continue
            verb = line[:4].upper()
            if verb == b"EHLO":
                self.transport.write(b"250-sink.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 104857600\r\n")
            elif verb == b"DATA":
                self.in_data = True
                self.data = []
                self.transport.write(b"354 go ahead\r\n")
            elif verb == b"QUIT":
                self.transport.write(b"221 bye\r\n")
                self.transport.close()
                return
            else:
                self.transport.write(b"250 2.0.0 Ok\r\n")

    def record(self) -> None:
        for line in self.data:
            if not line:
                break
            if line[:8].lower() == b"subject:":
                self.out.write(line[8:].strip() + b"\n")
                break


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--delay", type=float, default=0.0)
    args = ap.parse_args()
    host, port = args.listen.rsplit(":", 1)
    loop = asyncio.get_running_loop()
    # Unbuffered: every recorded message reaches the file at once, so a reader never misses one.
    with open(args.out, "ab", buffering=0) as out:
        server = await loop.create_server(lambda: SinkProtocol(out, args.delay), host, int(port), reuse_address=True)
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        print("ready", flush=True)
        await stop.wait()
        server.close()


if __name__ == "__main__":
    asyncio.run(main())
