"""Prometheus metrics of the MTA (served by warmup_base.metrics_http, the /metrics responder both
daemons use)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from mta.events import Event


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
        self.replies = Counter("mta_delivery_replies", "Replies of remote MX hosts to delivery attempts, per "
                               "recipient, by source and class (2xx, 4xx, 5xx)", ["source", "class"], registry=r)
        self.relay_failures = Counter("mta_relay_failures", "Upstream relay hosts that could not be used, by relay, "
                                      "host and stage (connect, greeting, ehlo, tls, auth)",
                                      ["relay", "host", "stage"], registry=r)
        # 1 while the MTA has a working connection to policyd, 0 while not; one series per configured
        # [policy] address (none without policyd, so an alert on == 0 never fires for a static setup).
        self.spool_space_low = Gauge("mta_spool_space_low", "1 while new mail is refused (452 4.3.1) for lack of "
                                     "space on the spool's file system, else 0", registry=r)
        self.policy_connected = Gauge("mta_policy_connected", "1 while connected to the policy daemon, else 0",
                                      ["address"], registry=r)

        self.tracking_requests = Counter("mta_tracking_requests", "Open and click requests on the tracking listener, "
                                         "by kind (open, click) and result (human, machine, invalid)",
                                         ["kind", "result"], registry=r)

    def on_event(self, event: Event) -> None:
        self.events.labels(event.event, event.reason).inc()
        if event.attempt and event.code and event.mx:   # a reply to our attempt (not a DSN that came later)
            self.replies.labels(event.source, f"{event.code // 100}xx").inc()

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
