"""Prometheus metrics of the MTA and a small asyncio HTTP responder for /metrics."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from mta.events import Event

log = logging.getLogger("mta.metrics")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events = Counter("mta_recipient_events", "Recipient outcomes by event and reason",
                              ["event", "reason"], registry=r)
        self.accepted_messages = Counter("mta_accepted_messages", "Messages accepted (250 after DATA)",
                                         ["listener"], registry=r)
        self.accepted_bytes = Counter("mta_accepted_bytes", "Bytes of accepted messages", registry=r)
        self.refusals = Counter("mta_smtp_refusals", "SMTP commands or data refused, by reason",
                                ["reason"], registry=r)
        self.accept_seconds = Histogram("mta_accept_seconds", "End of DATA to the 250 reply (spool fsync)",
                                        buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5),
                                        registry=r)
        self.commit_seconds = Histogram("mta_spool_commit_seconds", "Duration of one spool group commit",
                                        buckets=(.0005, .001, .0025, .005, .01, .025, .05, .1, .5),
                                        registry=r)
        self.commit_group = Histogram("mta_spool_commit_ops", "Operations per spool group commit",
                                      buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512), registry=r)
        self.connections_opened = Counter("mta_delivery_connections_opened", "Outbound connections opened",
                                          ["source"], registry=r)
        self.connection_failures = Counter("mta_delivery_connection_failures",
                                           "Outbound connection attempts that failed", ["source"], registry=r)
        self.dns_failures = Counter("mta_dns_failures", "Destination lookups that failed", ["kind"], registry=r)
        self.possible_duplicates = Counter("mta_possible_duplicates",
                                           "Recipients in flight at a crash, re-queued (may be delivered twice)",
                                           registry=r)
        self.inbound_reports = Counter("mta_inbound_reports", "Reports received by the inbound listener, by kind",
                                       ["kind"], registry=r)
        self.suppressed = Counter("mta_suppressed_recipients", "Recipients dropped before delivery: suppressed",
                                  ["reason"], registry=r)
        self.dsns = Counter("mta_dsns_generated", "Delivery status notifications generated", ["kind"],
                            registry=r)

    def track_policy_connection(self) -> Gauge:
        """`mta_policy_connected`, registered only when a policy daemon is configured."""
        return Gauge("mta_policy_connected", "1 while the policy daemon answers, 0 while it cannot be used",
                     registry=self.registry)

    def on_event(self, event: Event) -> None:
        self.events.labels(event.event, event.reason).inc()

    def on_commit(self, ops: int, seconds: float) -> None:
        self.commit_seconds.observe(seconds)
        self.commit_group.observe(ops)

    def add_gauges(self, name: str, doc: str, read: Callable[[], dict[str, float]], label: str) -> None:
        """A gauge family computed at scrape time (queue sizes, open connections...)."""
        self.registry.register(_CallbackCollector(name, doc, read, label))


class _CallbackCollector(Collector):
    def __init__(self, name: str, doc: str, read: Callable[[], dict[str, float]], label: str) -> None:
        self.name, self.doc, self.read, self.label = name, doc, read, label

    def collect(self):  # type: ignore[no-untyped-def]
        family = GaugeMetricFamily(self.name, self.doc, labels=[self.label])
        for key, value in self.read().items():
            family.add_metric([key], value)
        yield family


async def serve_metrics(host: str, port: int, registry: CollectorRegistry) -> asyncio.AbstractServer:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
            path = request.split(b" ", 2)[1] if request.count(b" ") >= 2 else b"/"
            if path.split(b"?")[0] in (b"/metrics", b"/"):
                body = generate_latest(registry)
                head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
            else:
                body = b"not found\n"
                head = b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n"
            writer.write(head + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port)
