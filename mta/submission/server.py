"""Starting SMTP listeners on the daemon's own event loop (aiosmtpd's Controller would run a
thread with a loop of its own; the queue and the listeners must share one)."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from mta.submission.protocol import ConnectionLimits, MtaSMTP
from warmup_base.listen import parse_hostport


def server_tls_context(cert: str, key: str) -> ssl.SSLContext | None:
    if not cert:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


async def start_listeners(addresses: list[str], key: str, make_protocol: Callable[[], MtaSMTP]
                          ) -> list[asyncio.AbstractServer]:
    loop = asyncio.get_running_loop()
    servers = []
    for i, addr in enumerate(addresses):
        host, port = parse_hostport(addr, f"{key}[{i}]")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        servers.append(await loop.create_server(make_protocol, host, port, family=family, reuse_address=True,
                                                backlog=1024))
    return servers


def protocol_factory(handler: Any, *, hostname: str, limits: ConnectionLimits, max_size: int,
                     max_line_length: int, command_timeout: float, data_timeout: float,
                     tls: ssl.SSLContext | None, check_password: Callable[[str, str], Awaitable[Any]] | None,
                     on_refused: Callable[[str], None], ident: str = "warmup-mta ESMTP",
                     loopback_plain_auth: bool = True, pre_mail_timeout: float = 0.0,
                     between_steps: Callable[[], None] | None = None) -> Callable[[], MtaSMTP]:
    def make() -> MtaSMTP:
        return MtaSMTP(handler, limits=limits, max_line_length=max_line_length, data_timeout=data_timeout,
                       check_password=check_password, on_refused=on_refused, hostname=hostname, ident=ident,
                       loopback_plain_auth=loopback_plain_auth, pre_mail_timeout=pre_mail_timeout,
                       between_steps=between_steps,
                       data_size_limit=max_size, enable_SMTPUTF8=True, tls_context=tls, timeout=command_timeout,
                       auth_require_tls=True, loop=asyncio.get_running_loop())
    return make
