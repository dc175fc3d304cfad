"""What the API's handlers share: the daemon's pipeline, spool, queue and stores, wired once by
`mta.http.api.app.start_api`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter

from mta.config import Config
from mta.http.api.auth import ApiKey, KeyStore, bearer_key
from mta.http.api.errors import ApiError
from mta.http.api.eventindex import EventIndex
from mta.http.api.request import Limits
from mta.spool import Spool
from mta.submission.pipeline import Injector, MessageBuilder

if TYPE_CHECKING:
    from mta.queue.scheduler import Scheduler


class ApiMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter("mta_api_requests", "HTTP API requests answered, by route and status",
                                ["route", "status"], registry=registry)
        self.errors = Counter("mta_api_errors", "HTTP API error answers, by error code", ["code"], registry=registry)
        self.messages = Counter("mta_api_messages", "Messages accepted through the HTTP API", registry=registry)


@dataclass
class ApiContext:
    cfg: Config
    builder: MessageBuilder
    injector: Injector
    spool: Spool
    scheduler: Scheduler
    keys: KeyStore
    index: EventIndex
    clock: Callable[[], float]
    metrics: ApiMetrics
    # the daemon's erasure (mta.erasure.service.DaemonEraser.erase): POST /v1/erasure
    erase: Callable[[str], Awaitable[Any]] | None = None
    # Idempotency-Key -> (lock, [users]): see messages.Idempotency
    locks: dict[tuple[str, str], tuple[asyncio.Lock, list[int]]] = field(default_factory=dict)

    @property
    def limits(self) -> Limits:
        return Limits(frozenset(self.cfg.streams), self.cfg.submission.max_recipients,
                      float(self.cfg.api.max_schedule_ahead))

    def authenticate(self, request: web.Request) -> ApiKey:
        key = bearer_key(request.headers.get("Authorization", ""))
        found = self.keys.check(key) if key else None
        if found is None:
            raise ApiError(401, "unauthorized", "a valid API key is required (Authorization: Bearer KEY)",
                           headers={"WWW-Authenticate": 'Bearer realm="warmup-mta"'})
        return found


CTX: web.AppKey[ApiContext] = web.AppKey("ctx", ApiContext)
