"""Tracking and engagement, wired for the daemon: the tokens the submission path signs links with,
the public tracking listener, and the engagement store the events feed. Off unless
`[tracking] enabled`."""

from __future__ import annotations

import logging
from collections.abc import Callable

from mta.config import Config
from mta.engagement.open import EngagementStoreLike, open_engagement_store
from mta.engagement.recorder import EngagementRecorder
from mta.engagement.score import EngagementRules, engaged_threshold
from mta.events import Event, EventLog
from mta.http.tracking import Activity, TrackingServer
from mta.metrics import Metrics
from mta.spool.store import EngagementRanking, SpoolStore
from mta.submission.server import server_tls_context
from mta.tracking.machine import MachineRules
from mta.tracking.tokens import CLICK, TrackingTokens
from warmup_base.listen import parse_hostport

__all__ = ["EngagementService"]

log = logging.getLogger("mta.engagement")


class EngagementService:
    def __init__(self, cfg: Config, events: EventLog, metrics: Metrics, clock: Callable[[], float]) -> None:
        self.cfg = cfg
        self.events = events
        self.metrics = metrics
        self.clock = clock
        self.tokens: TrackingTokens | None = None
        self.store: EngagementStoreLike | None = None
        self.recorder: EngagementRecorder | None = None
        self.server: TrackingServer | None = None

    @property
    def enabled(self) -> bool:
        return self.cfg.tracking.enabled

    def rules(self) -> EngagementRules:
        e = self.cfg.engagement
        return EngagementRules(half_life=float(e.half_life), inactive_after=float(e.inactive_after))

    def open_store(self, spool: SpoolStore) -> None:
        """Before the spool's writer starts: the store, attached to the spool so claims can rank."""
        if not self.enabled:
            return
        self.store = open_engagement_store(self.cfg)
        if self.cfg.engagement.order_streams:
            spool.attach_engagement(self.cfg.engagement_path)

    def ranking(self, now: float) -> EngagementRanking | None:
        e = self.cfg.engagement
        if self.store is None or not e.order_streams:
            return None
        rules = self.rules()
        return EngagementRanking(frozenset(self.cfg.stream(s).priority for s in e.order_streams),
                                 engaged_threshold(now, rules), now - rules.inactive_after)

    async def start(self, verp_key: bytes) -> None:
        t = self.cfg.tracking
        if not t.enabled or self.store is None:
            return
        self.tokens = TrackingTokens(t.keys(fallback=verp_key), max_age=float(t.token_max_age), clock=self.clock)
        self.recorder = EngagementRecorder(self.store)
        self.events.subscribe(self.recorder.on_event)
        self.recorder.start()
        if t.listen:
            host, port = parse_hostport(t.listen, "tracking.listen")
            rules = MachineRules(float(t.fast_click_seconds), float(t.burst_seconds), t.burst_links)
            self.server = TrackingServer(self.tokens, self.on_activity, delivered_at=self.recorder.delivered_at,
                                         rules=rules, clock=self.clock,
                                         count=lambda kind, result: self.metrics.tracking_requests.labels(
                                             "click" if kind == CLICK else "open", result).inc())
            await self.server.start(host, port, ssl=server_tls_context(t.tls_cert, t.tls_key))

    async def on_activity(self, activity: Activity) -> None:
        info = activity.info
        self.events.emit(Event("clicked" if info.kind == CLICK else "opened", info.queue_id, info.recipient,
                               time=activity.at, tenant=info.tenant, campaign=info.campaign, variant=info.variant,
                               url=info.url, machine=activity.verdict.machine, reason=activity.verdict.why))

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
        if self.recorder is not None:
            await self.recorder.stop()
