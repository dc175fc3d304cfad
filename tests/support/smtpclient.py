"""A raw SMTP client for tests that must send exactly the bytes they mean (smuggling, bare LF,
pipelining, half-finished DATA), which a library client would refuse or repair."""

from __future__ import annotations

import asyncio
import ssl


class RawClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, host: str, port: int, source: str | None = None) -> tuple[RawClient, str]:
        reader, writer = await asyncio.open_connection(host, port, local_addr=(source, 0) if source else None)
        client = cls(reader, writer)
        return client, await client.reply()

    async def reply(self, timeout: float = 10.0) -> str:
        """One complete reply; multi-line replies are joined with newlines."""
        lines = []
        while True:
            line = await asyncio.wait_for(self.reader.readline(), timeout)
            if not line:
                raise ConnectionError("server closed the connection: " + " | ".join(lines))
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            lines.append(text)
            if len(text) < 4 or text[3] != "-":
                return "\n".join(lines)

    async def cmd(self, line: str | bytes, timeout: float = 10.0) -> str:
        self.send(line if isinstance(line, bytes) else line.encode() + b"\r\n")
        return await self.reply(timeout)

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def starttls(self) -> None:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        await self.writer.start_tls(ctx)

    async def closed(self, timeout: float = 10.0) -> bool:
        """True once the server has closed the connection (anything it still sends is skipped)."""
        try:
            while await asyncio.wait_for(self.reader.read(4096), timeout):
                pass
        except (ConnectionError, TimeoutError):
            return False
        return True

    def close(self) -> None:
        self.writer.close()
