"""`policyd serve`: wires config, store, service, listeners, metrics and signals together.

SIGTERM (or SIGINT) stops listening, lets requests in flight finish and exits 0. SIGHUP reloads
the config: ISPs, schedules, rules and limits take effect at once; a changed listen address or
state URL needs a restart (logged). An invalid config on reload is logged and the old one kept.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time

from policy.config import Config, ConfigError, load_config
from policy.engine import Policy
from policy.metrics import Metrics, serve_metrics
from policy.server import PolicyServer
from policy.service import PolicyService
from policy.store import open_store
from policy.store.redis_store import RedisStore
from warmup_base.listen import parse_hostport
from warmup_base.sdnotify import notify

log = logging.getLogger("policyd")


def setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger().setLevel(level.upper())


async def serve(config_path: str) -> int:
    cfg = load_config(config_path)
    setup_logging(cfg.policyd.log_level)
    store = open_store(cfg.policyd.state, cfg.base_dir, cfg.policyd.state_prefix, cfg.policyd.history_limit)
    if isinstance(store, RedisStore):
        await store.ping()      # fail at start, with the URL in the message, not at the first grant
    metrics = Metrics()
    service = PolicyService(Policy(cfg.policy), store, time.time, cfg.policyd.cache_seconds, hooks=metrics)
    server = PolicyServer(service, cfg.policyd.max_message, metrics)
    metrics_server = None
    try:
        bound = await server.start(cfg.listen_addresses)
        if cfg.metrics.listen:
            host, port = parse_hostport(cfg.metrics.listen, "metrics.listen")

            async def refresh() -> None:
                metrics.set_pairs([row.to_dict() for row in await service.status()])

            metrics_server = await serve_metrics(host, port, metrics, refresh)
    except OSError as exc:
        await server.stop(0)
        await store.close()
        raise ConfigError(f"policyd.listen / metrics.listen: cannot listen: {exc}") from None

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    loop.add_signal_handler(signal.SIGINT, stopping.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: _reload(config_path, cfg, service))
    w = cfg.policy.warmup
    if not w.ip_schedule and not w.domain_schedule and not cfg.policy.sources and not cfg.policy.mailboxes:
        log.warning("no warm-up schedule configured: policyd shapes connections only (see conf/policy.toml)")
    log.info("policyd listening on %s, state %s%s", ", ".join(bound), cfg.policyd.state,
             f", metrics on {cfg.metrics.listen}" if cfg.metrics.listen else "")
    notify(f"READY=1\nSTATUS=listening on {', '.join(bound)}")

    await stopping.wait()
    log.info("policyd stopping: draining requests in flight")
    notify("STOPPING=1")
    await server.stop(cfg.policyd.drain_timeout)
    if metrics_server is not None:
        metrics_server.close()
    await store.close()
    log.info("policyd stopped")
    return 0


def _reload(config_path: str, running: Config, service: PolicyService) -> None:
    notify("RELOADING=1")
    try:
        fresh = load_config(config_path)
    except ConfigError as exc:
        log.error("reload failed, keeping the running config: %s", exc)
        notify("READY=1\nSTATUS=reload failed; running the previous config")
        return
    service.reload(Policy(fresh.policy))
    service.cache_seconds = fresh.policyd.cache_seconds
    setup_logging(fresh.policyd.log_level)
    for key in ("listen", "also_listen", "state", "state_prefix", "max_message"):
        if getattr(fresh.policyd, key) != getattr(running.policyd, key):
            log.warning("reload: policyd.%s changed; takes effect at the next restart", key)
    if fresh.metrics.listen != running.metrics.listen:
        log.warning("reload: metrics.listen changed; takes effect at the next restart")
    log.info("reloaded %s: %d ISPs, %d schedules, rules and thresholds as written", config_path,
             len(fresh.policy.isps), len(fresh.policy.schedules))
    notify("READY=1\nSTATUS=reloaded")
