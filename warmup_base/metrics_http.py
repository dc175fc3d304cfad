"""The small asyncio HTTP responder for /metrics that both daemons use, so both serve the same
exposition format (Prometheus text 0.0.4) and neither exports `_created` series."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from prometheus_client import CollectorRegistry, disable_created_metrics, generate_latest

log = logging.getLogger("mta.metrics")

# A `_created` series per counter and histogram doubles the series count and says only when the
# process started. Process-wide: both daemons import this module to serve their metrics.
disable_created_metrics()

# The classic text format: what generate_latest writes, and what every Prometheus 2.x parses.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


async def serve_metrics(host: str, port: int, registry: CollectorRegistry,
                        refresh: Callable[[], Awaitable[None]] | None = None) -> asyncio.Server:
    """GET /metrics (or /) answers the registry in the text format; another path 404, another method
    405. One request per connection. `refresh` runs before each scrape (policyd: pair gauges)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
            parts = request.split(b"\r\n", 1)[0].split(b" ")
            method, path = parts[0], (parts[1] if len(parts) > 1 else b"/")
            if method not in (b"GET", b"HEAD"):
                status, body, ctype = b"405 Method Not Allowed", b"GET only\n", b"text/plain"
            elif path.split(b"?")[0] not in (b"/metrics", b"/"):
                status, body, ctype = b"404 Not Found", b"not found\n", b"text/plain"
            else:
                if refresh is not None:
                    try:
                        await refresh()
                    except Exception:  # a scrape must still answer when a backend is down
                        log.exception("metrics: refresh before the scrape failed")
                status, body, ctype = b"200 OK", generate_latest(registry), CONTENT_TYPE.encode()
            head = (b"HTTP/1.1 " + status + b"\r\nContent-Type: " + ctype +
                    f"\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode())
            writer.write(head if method == b"HEAD" else head + body)
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    return await asyncio.start_server(handle, host, port)
