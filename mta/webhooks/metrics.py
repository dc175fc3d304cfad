"""Prometheus metrics of the webhooks, on the MTA's registry (labels: the endpoint's name)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import Counter, Gauge

from mta.metrics import Metrics


class WebhookMetrics:
    def __init__(self, metrics: Metrics, backlog: Callable[[], dict[str, float]]) -> None:
        r = metrics.registry
        self.posts = Counter("mta_webhook_posts", "Webhook POSTs by endpoint and result (2xx, 3xx, 4xx, 5xx, "
                             "timeout, connect_error)", ["endpoint", "result"], registry=r)
        self.delivered = Counter("mta_webhook_events_delivered", "Events an endpoint answered 2xx for",
                                 ["endpoint"], registry=r)
        self.dropped = Counter("mta_webhook_events_dropped", "Events given up: expired (older than max_age), "
                               "backlog_full (max_backlog reached), overload (outbox writer behind)",
                               ["endpoint", "reason"], registry=r)
        self.failures = Gauge("mta_webhook_consecutive_failures", "Failed POSTs in a row (0: the endpoint is "
                              "healthy)", ["endpoint"], registry=r)
        metrics.add_gauges("mta_webhook_backlog", "Events waiting in the webhook outbox", backlog, "endpoint")
