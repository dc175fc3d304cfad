"""Prometheus metrics of policyd, served by the /metrics responder both daemons use (one format).

Counters follow the service's hooks; the per-pair gauges (warm-up day, limit, use, factor, pause)
are refreshed from the store at each scrape, so they show what every policyd sharing the state did.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from policy.engine.model import Action
from warmup_base import metrics_http
from warmup_base.policy_protocol.model import Grant

log = logging.getLogger("policyd")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.asks = Counter("policyd_grant_requests", "Grant requests answered", ["isp"], registry=r)
        self.granted_messages = Counter("policyd_granted_messages", "Messages granted in leases", ["isp"], registry=r)
        self.refused = Counter("policyd_refused_requests", "Grant requests answered with nothing", ["isp"],
                               registry=r)
        self.outcomes = Counter("policyd_feedback_outcomes", "Outcomes counted, by ISP and health class",
                                ["isp", "cls"], registry=r)
        self.actions = Counter("policyd_actions", "Actions taken", ["rule", "action"], registry=r)
        self.errors = Counter("policyd_protocol_errors", "Requests answered with an error", ["code"], registry=r)
        self.latency = Histogram("policyd_request_seconds", "Time to answer one protocol request", ["op"],
                                 registry=r, buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5))
        self.connections = Gauge("policyd_connections", "Open client connections", registry=r)
        self.day = Gauge("policyd_warmup_day", "Warm-up day of a pair", ["kind", "name", "isp"], registry=r)
        self.limit = Gauge("policyd_daily_limit", "Today's allowance of a pair (volume x factor)",
                           ["kind", "name", "isp"], registry=r)
        self.factor = Gauge("policyd_rate_factor", "Multiplicative decrease in force", ["kind", "name", "isp"],
                            registry=r)
        self.paused = Gauge("policyd_paused", "1 while a pair is paused", ["kind", "name", "isp"], registry=r)
        self.used = Gauge("policyd_used_today", "Messages a pair sent in its current warm-up day",
                          ["kind", "name", "isp"], registry=r)

    # ---- policy.service.ServiceHooks
    def granted(self, isp: str, asked: int, grants: Sequence[Grant]) -> None:
        self.asks.labels(isp).inc()
        total = sum(g.count for g in grants)
        if total:
            self.granted_messages.labels(isp).inc(total)
        elif asked:
            self.refused.labels(isp).inc()

    def observed(self, cls: str, count: int, isp: str = "") -> None:
        self.outcomes.labels(isp, cls).inc(count)

    def acted(self, action: Action) -> None:
        self.actions.labels(action.rule, action.action).inc()

    def set_pairs(self, rows: Sequence[dict[str, object]]) -> None:
        for gauge in (self.day, self.limit, self.factor, self.paused, self.used):
            gauge.clear()
        for row in rows:
            labels = (str(row["kind"]), str(row["name"]), str(row["isp"]))
            self.day.labels(*labels).set(float(row["day"]))            # type: ignore[arg-type]
            self.limit.labels(*labels).set(float(row["limit"]))        # type: ignore[arg-type]
            self.factor.labels(*labels).set(float(row["factor"]))      # type: ignore[arg-type]
            self.paused.labels(*labels).set(1.0 if row["paused"] else 0.0)
            self.used.labels(*labels).set(float(row["used_today"] or 0))  # type: ignore[arg-type]

    def render(self) -> bytes:
        return generate_latest(self.registry)


async def serve_metrics(host: str, port: int, metrics: Metrics,
                        refresh: Callable[[], Awaitable[None]] | None = None) -> asyncio.Server:
    """The MTA's responder: the same exposition format and HTTP behaviour for both daemons."""
    return await metrics_http.serve_metrics(host, port, metrics.registry, refresh)
