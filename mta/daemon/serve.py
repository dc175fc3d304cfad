"""`mta serve`: wires the spool, scheduler, listeners, metrics and control socket together, and
handles signals (SIGTERM: graceful drain and exit 0; SIGHUP: reload) and systemd notification."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import time
from collections.abc import Callable
from typing import Any

from mta.compliance.dkim import worker as dkim_worker
from mta.compliance.dkim.signer import DkimSigner
from mta.compliance.unsubscribe import UnsubscribeInfo, UnsubscribeTokens
from mta.config import Config, ConfigError, load_config
from mta.daemon.control import ControlServer
from mta.daemon.engagement import EngagementService
from mta.daemon.erasure import DaemonEraser
from mta.daemon.fdlimit import raise_open_files
from mta.delivery.dnsroute import MxResolver, ResolverConfig
from mta.events import Event, EventLog
from mta.eventstream.redis_stream import RedisEventStream
from mta.http.api.app import ApiServer
from mta.http.api.auth import KeyStore
from mta.http.api.context import ApiContext, ApiMetrics
from mta.http.api.eventindex import EventIndex
from mta.http.unsubscribe import start_unsubscribe_server
from mta.inbound.bounces import BounceProcessor
from mta.inbound.handler import InboundHandler
from mta.metrics import Metrics
from mta.queue.limits import StaticLimiter
from mta.queue.scheduler import Scheduler
from mta.spool import Spool
from mta.spool.diskspace import DiskGuard, sqlite_free_pages
from mta.spool.gauges import SpoolGauges
from mta.spool.suppression import Suppression
from mta.spool.suppression import add as add_suppression
from mta.submission.auth import Authenticator, load_users
from mta.submission.handler import SubmissionHandler
from mta.submission.pipeline import Injector, MessageBuilder
from mta.submission.protocol import ConnectionLimits, trust_check
from mta.submission.server import protocol_factory, server_tls_context, start_listeners
from mta.webhooks.service import Webhooks
from warmup_base.listen import parse_hostport
from warmup_base.metrics_http import serve_metrics
from warmup_base.policy_protocol.model import Limiter
from warmup_base.sdnotify import notify

log = logging.getLogger("mta")


def make_limiter(cfg: Config, clock: Callable[[], float]) -> Limiter:
    """policyd's client as `[policy]` describes it (address, transactional_floor), else static limits."""
    if cfg.policy.address:
        from warmup_base.policy_protocol.client import PolicyClient  # the policy daemon's client implements Limiter

        return PolicyClient(cfg.policy.address, transactional_floor=float(cfg.policy.transactional_floor),
                            clock=clock)
    weights = {s.name: s.weight for s in cfg.egress.sources}
    return StaticLimiter(limits_for=cfg.site_limits, weights=weights, clock=clock)


class MtaDaemon:
    def __init__(self, cfg: Config, clock: Callable[[], float] = time.time, limiter: Limiter | None = None) -> None:
        self.cfg = cfg
        self.clock = clock
        self.metrics = Metrics()
        self.events = EventLog(cfg.events_path, clock)
        self.events.subscribe(self.metrics.on_event)
        self.limiter = limiter
        self.servers: list[asyncio.AbstractServer] = []
        self.spool: Spool | None = None
        self.scheduler: Scheduler | None = None
        self.control: ControlServer | None = None
        self.eraser = DaemonEraser(self)       # `mta erase` and POST /v1/erasure, one at a time
        self.auth: Authenticator | None = None
        self.bounces: BounceProcessor | None = None
        # Keys are loaded here so a broken key file stops the start with a message naming it.
        self.signer = DkimSigner(cfg.dkim.keys, clock=clock) if cfg.dkim.keys else None
        self.sign_worker = (dkim_worker.SigningWorker(self.signer, clock)
                            if self.signer is not None and dkim_worker.wanted() else None)
        self.unsubscribe_tokens: UnsubscribeTokens | None = None
        self.engagement = EngagementService(cfg, self.events, self.metrics, clock)
        self.spool_gauges: SpoolGauges | None = None
        self._bounce_task: asyncio.Task[None] | None = None
        self._disk_task: asyncio.Task[None] | None = None
        self.disk: DiskGuard | None = None
        self._stopped = asyncio.Event()
        self._stopping = False
        # Readers of the event log with their own buffers (a durable outbox, a bounded memory queue):
        # a slow or dead consumer never holds up acceptance or delivery.
        self.webhooks = Webhooks(cfg.webhooks, cfg.mta.spool_dir, self.metrics, clock) if cfg.webhooks else None
        ev = cfg.events
        self.event_stream = (RedisEventStream(ev.redis, ev.redis_stream, ev.redis_maxlen, ev.redis_buffer,
                                              self.metrics) if ev.redis else None)
        for sink in (self.webhooks, self.event_stream):
            if sink is not None:
                self.events.subscribe(sink.on_event)
        self.api: ApiServer | None = None
        self.api_keys: KeyStore | None = None
        self.event_index: EventIndex | None = None

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        cfg = self.cfg
        # Each listener may hold max_connections sockets; the default soft limit (1024) is less.
        raise_open_files(2 * cfg.submission.max_connections + 512)
        self.spool = Spool(cfg.mta.spool_dir, on_commit=self.metrics.on_commit)
        self.disk = DiskGuard(cfg.mta.spool_dir, cfg.mta.min_free_space, ballast=cfg.mta.spool_ballast,
                              on_low=lambda low: self.metrics.spool_space_low.set(1 if low else 0),
                              reusable=sqlite_free_pages(self.spool.store.path))
        self.spool.set_disk_callbacks(self.disk.note_full, self.disk.note_written)
        self.engagement.open_store(self.spool.store)
        if cfg.api.listen:      # before recovery, so the API's event history misses nothing
            self.event_index = EventIndex(cfg.mta.spool_dir, float(cfg.api.event_retention), self.clock)
            self.events.subscribe(self.event_index.on_event)
        self.disk.starting = True      # no new mail before start-up recovery is on disk
        self.disk.ensure_ballast()
        self.spool.start()
        if self.webhooks is not None:      # before recovery, which may emit events
            await self.webhooks.start()
        if self.event_stream is not None:
            self.event_stream.start()
        verp_key = cfg.verp_key() or await self.spool.call(_spool_verp_key, persist=True)
        if cfg.unsubscribe.enabled:
            self.unsubscribe_tokens = UnsubscribeTokens(cfg.unsubscribe.keys(fallback=verp_key),
                                                        max_age=cfg.unsubscribe.token_max_age, clock=self.clock)
        await self.engagement.start(verp_key)
        resolver = MxResolver(ResolverConfig(nameservers=cfg.dns.nameservers, timeout=cfg.dns.timeout,
                                             lifetime=max(cfg.dns.timeout * 2, 1.0)))
        limiter = self.limiter or make_limiter(cfg, self.clock)
        self.scheduler = Scheduler(cfg, self.spool, resolver, limiter, self.events, self.metrics, self.clock,
                                   verp_key)
        self.scheduler.engagement_ranking = self.engagement.ranking
        # Start-up recovery writes; on a full disk it waits (retrying) for space, and the daemon
        # starts anyway: listeners refuse mail with 452 until recovery is done.
        recovery = asyncio.get_running_loop().create_task(self.scheduler.start())
        await asyncio.wait({recovery}, timeout=2.0)
        if not recovery.done():
            log.warning("start-up recovery is waiting for disk space; refusing new mail until it is done")
        recovery.add_done_callback(self._recovered)
        self._disk_task = asyncio.get_running_loop().create_task(self._watch_disk())
        self.metrics.add_gauges("mta_queue_state", "In-memory queue state", lambda: {
            k: float(v) for k, v in self.scheduler.stats().items()} if self.scheduler else {}, "what")
        self.spool_gauges = SpoolGauges(cfg.mta.spool_dir, self.clock, cfg.metrics.queue_sites)
        self.metrics.registry.register(self.spool_gauges)
        if cfg.metrics.listen:   # the on-disk count costs a scan: only when someone can scrape it
            self.spool_gauges.start(cfg.metrics.queue_interval)
        self.auth = Authenticator(load_users(cfg.submission.users_file)) if cfg.submission.users_file else None
        self.bounces = BounceProcessor(cfg, self.spool, self.events, self.metrics, verp_key,
                                       self.scheduler.add_feedback, self.scheduler.suppressed, self.clock)
        self._bounce_task = asyncio.get_running_loop().create_task(self.bounces.run())
        await self._start_listeners(verp_key)
        if cfg.metrics.listen:
            host, port = parse_hostport(cfg.metrics.listen, "metrics.listen")
            self.servers.append(await serve_metrics(host, port, self.metrics.registry))
        if self.unsubscribe_tokens is not None and cfg.unsubscribe.listen:
            host, port = parse_hostport(cfg.unsubscribe.listen, "unsubscribe.listen")
            tls = server_tls_context(cfg.unsubscribe.tls_cert, cfg.unsubscribe.tls_key)
            self.servers.append(await start_unsubscribe_server(host, port, self.unsubscribe_tokens.verify,
                                                               self.unsubscribe, ssl=tls))
        if self.event_index is not None:
            await self._start_api()
        self.control = ControlServer(os.path.join(cfg.mta.spool_dir, "control.sock"), self)
        await self.control.start()
        log.info("mta ready: submission on %s, inbound on %s", ", ".join(cfg.submission.listen),
                 ", ".join(cfg.inbound.listen))
        notify("READY=1\nSTATUS=accepting mail")

    async def _start_listeners(self, verp_key: bytes) -> None:
        cfg = self.cfg
        sub = cfg.submission
        assert self.scheduler is not None
        tls = server_tls_context(sub.tls_cert, sub.tls_key)
        handler = SubmissionHandler(cfg, self.scheduler.accept, self.metrics, self.clock, signer=self.signer,
                                    unsubscribe_tokens=self.unsubscribe_tokens, disk=self.disk,
                                    tracking_tokens=self.engagement.tokens,
                                    sign_worker=self.sign_worker)
        check = self._check_password if self.auth is not None else None
        trusted = trust_check(sub.trusted_networks)
        reserved = min(sub.reserved_connections, sub.max_connections // 2)
        limits = ConnectionLimits(sub.max_connections, sub.max_connections_per_ip, reserved, trusted)
        refused = self._count_refusal
        make = protocol_factory(handler, hostname=cfg.mta.hostname, limits=limits, max_size=sub.max_message_size,
                                max_line_length=sub.max_line_length, command_timeout=sub.command_timeout,
                                data_timeout=sub.data_timeout, tls=tls, check_password=check, on_refused=refused,
                                loopback_plain_auth=sub.loopback_plain_auth, pre_mail_timeout=sub.pre_mail_timeout,
                                between_steps=self.scheduler.reply_peek.poll_now)
        self.servers += await start_listeners(sub.listen, "submission.listen", make)
        if cfg.inbound.listen:
            inbound = InboundHandler(cfg, verp_key, self.metrics, self.clock,
                                     on_stored=self.bounces.wake if self.bounces else None,
                                     unsubscribe_tokens=self.unsubscribe_tokens, on_unsubscribe=self.unsubscribe,
                                     disk=self.disk)
            in_limits = ConnectionLimits(sub.max_connections, sub.max_connections_per_ip, reserved, trusted)
            make_in = protocol_factory(inbound, hostname=cfg.mta.hostname, limits=in_limits,
                                       max_size=cfg.inbound.max_message_size, max_line_length=sub.max_line_length,
                                       command_timeout=sub.command_timeout, data_timeout=sub.data_timeout,
                                       tls=tls, check_password=None, on_refused=refused,
                                       pre_mail_timeout=sub.pre_mail_timeout)
            self.servers += await start_listeners(cfg.inbound.listen, "inbound.listen", make_in)

    async def _start_api(self) -> None:
        assert self.spool is not None and self.scheduler is not None and self.event_index is not None
        self.api_keys = KeyStore(self.cfg.mta.spool_dir)
        builder = MessageBuilder(self.cfg, self.signer, self.unsubscribe_tokens, self.engagement.tokens,
                                 defer_signing=self.sign_worker is not None)
        injector = Injector(self.scheduler.accept, self.metrics, self.disk, self.sign_worker)
        ctx = ApiContext(self.cfg, builder, injector, self.spool, self.scheduler, self.api_keys, self.event_index,
                         self.clock, ApiMetrics(self.metrics.registry))
        ctx.erase = self.eraser.erase
        self.api = ApiServer(ctx)
        await self.api.start()

    async def unsubscribe(self, info: UnsubscribeInfo) -> None:
        """A valid one-click (HTTP) or mailto unsubscribe: the address is suppressed for its tenant."""
        assert self.spool is not None and self.scheduler is not None
        entry = Suppression(info.tenant, info.recipient, "unsubscribe", self.clock(), 0.0, "list-unsubscribe",
                            f"{info.sending_domain} {info.queue_id}")
        await self.spool.call(lambda s: add_suppression(s.db, entry))
        self.scheduler.suppressed.note(info.recipient)
        self.events.emit(Event("unsubscribed", info.queue_id, info.recipient, tenant=info.tenant,
                               sending_domain=info.sending_domain, reason="unsubscribe"))

    def _recovered(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is not None:
            if not task.cancelled():
                log.error("start-up recovery failed: %s", task.exception())
            return
        assert self.disk is not None
        self.disk.starting = False
        self.disk.tick()

    async def _watch_disk(self) -> None:
        """Notices space coming back (or going) without mail arriving; re-makes the ballast."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(1.0)
            if self.disk is not None:
                await loop.run_in_executor(None, self.disk.tick)

    def resolver_forget(self, domain: str) -> None:
        """Drops a cached route (after an operator fixed DNS, or in tests)."""
        if self.scheduler is not None:
            self.scheduler.router.resolver.forget(domain)

    def _count_refusal(self, reason: str) -> None:
        self.metrics.refusals.labels(reason).inc()

    async def _check_password(self, name: str, password: str) -> Any:
        assert self.auth is not None
        return await asyncio.get_running_loop().run_in_executor(None, self.auth.check, name, password)

    async def stop(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        notify("STOPPING=1")
        log.info("stopping: closing listeners, draining deliveries")
        for server in self.servers:
            server.close()
        if self.api is not None:
            await self.api.stop_listening()
        if self.control is not None:
            await self.control.stop()
        if self._bounce_task is not None:
            self._bounce_task.cancel()
        if self._disk_task is not None:
            self._disk_task.cancel()
        if self.scheduler is not None:
            await self.scheduler.stop()
        await self.engagement.stop()
        if self.spool_gauges is not None:
            await self.spool_gauges.stop()
        if self.webhooks is not None:      # after the scheduler: its last events reach the outbox
            await self.webhooks.stop()
        if self.event_stream is not None:
            await self.event_stream.stop()
        if self.spool is not None:
            await self.spool.close()
        if self.sign_worker is not None:
            await self.sign_worker.close()
        self.events.close()
        if self.api is not None:
            await self.api.close()
        elif self.event_index is not None:
            await self.event_index.close()
        if self.api_keys is not None:
            self.api_keys.close()
        self._stopped.set()

    def reload(self) -> None:
        """SIGHUP: reopen the event log (log rotation), reload the users file and the DKIM keys."""
        notify("RELOADING=1")
        self.events.reopen()
        log.info("SIGHUP: event log %s reopened", self.cfg.events_path)
        if self.signer is not None:
            try:
                keys = load_config(self.cfg.path).dkim.keys if self.cfg.path else self.cfg.dkim.keys
            except ConfigError as exc:
                log.error("config not re-read on SIGHUP (DKIM keys kept): %s", exc)
                keys = self.cfg.dkim.keys
            report = self.signer.reload(keys)
            for error in report.errors:
                log.error("DKIM reload: %s", error)
            for warning in report.warnings:
                log.warning("DKIM reload: %s", warning)
            log.info("SIGHUP: DKIM keys reloaded (%d configured, %d errors)", len(keys), len(report.errors))
        if self.auth is not None and self.cfg.submission.users_file:
            try:
                self.auth.users = load_users(self.cfg.submission.users_file)
                log.info("users file reloaded: %d users", len(self.auth.users))
            except (OSError, ValueError) as exc:
                log.error("users file not reloaded, keeping the old one: %s", exc)
        notify("READY=1")

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        # Handlers first: systemd may send SIGHUP or SIGTERM the moment it reads READY=1.
        started = asyncio.Event()

        stopper: list[asyncio.Task[None]] = []

        def on_term() -> None:
            if not stopper:
                stopper.append(loop.create_task(self._stop_when_started(started)))

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_term)
        loop.add_signal_handler(signal.SIGHUP, lambda: self.reload() if started.is_set() else None)
        await self.start()
        started.set()
        await self._stopped.wait()
        return 0

    async def _stop_when_started(self, started: asyncio.Event) -> None:
        await started.wait()
        await self.stop()


def _spool_verp_key(store: Any) -> bytes:
    """A VERP key kept in the spool, made on first start, when the config names none."""
    key = store.get_meta("verp_key")
    if key is None:
        key = secrets.token_hex(32)
        store.set_meta("verp_key", key)
    return bytes(key, "ascii")
