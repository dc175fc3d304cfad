"""policyd's listener: the wire protocol over asyncio TCP and Unix sockets.

A connection's lines are answered in order. Whatever a client sends, the answer is a reply line
(an error reply for malformed input) and a log line, never a crash: only an over-long line closes
the connection, because its end, and so the next message's start, is unknown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
import time
from collections.abc import Sequence
from typing import Any

from policy import operations
from policy.metrics import Metrics
from policy.service import PolicyService
from policy.store.base import StoreError
from warmup_base.listen import parse_listen
from warmup_base.policy_protocol import wire as protocol

log = logging.getLogger("policyd")


class PolicyServer:
    def __init__(self, service: PolicyService, max_message: int = 4 * 1024 * 1024,
                 metrics: Metrics | None = None) -> None:
        self.service = service
        self.max_message = max_message
        self.metrics = metrics
        self._servers: list[asyncio.Server] = []
        self._unix_paths: list[str] = []
        self._connections: dict[asyncio.Task[None], bool] = {}   # handler task -> busy with a request
        self._closing = False

    async def start(self, addresses: Sequence[str]) -> list[str]:
        """Listens on every address; returns them as bound (a TCP port 0 becomes the real port)."""
        bound = []
        for address in addresses:
            where = parse_listen(address, "listen")
            if isinstance(where, str):
                _remove_stale_socket(where)
                server = await asyncio.start_unix_server(self._handle, where, limit=self.max_message)
                self._unix_paths.append(where)
                bound.append(f"unix:{where}")
            else:
                server = await asyncio.start_server(self._handle, where[0], where[1], limit=self.max_message)
                host, port = server.sockets[0].getsockname()[:2]
                bound.append(f"{host}:{port}")
            self._servers.append(server)
        return bound

    async def stop(self, drain_timeout: float = 10.0) -> None:
        """Stops listening, lets requests in flight finish (up to `drain_timeout`), closes the rest."""
        self._closing = True
        for server in self._servers:
            server.close()
        for task, busy in list(self._connections.items()):
            if not busy:
                task.cancel()
        busy_tasks = [t for t, busy in self._connections.items() if busy]
        if busy_tasks:
            await asyncio.wait(busy_tasks, timeout=drain_timeout)
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.wait(list(self._connections), timeout=1.0)
        for path in self._unix_paths:
            with contextlib.suppress(OSError):
                os.unlink(path)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = False
        peer = writer.get_extra_info("peername") or "unix"
        if self.metrics:
            self.metrics.connections.inc()
        try:
            while not self._closing:
                try:
                    line = await reader.readline()
                except ValueError:      # longer than max_message: framing is lost
                    log.warning("protocol: %s sent a line over %d bytes; closing", peer, self.max_message)
                    self._count_error("too_large")
                    writer.write(protocol.error_reply(None, "too_large",
                                                      f"a message may be at most {self.max_message} bytes"))
                    await writer.drain()
                    break
                if not line:
                    break
                if not line.strip():
                    continue
                self._connections[task] = True
                writer.write(await self.dispatch(line, peer))
                await writer.drain()
                self._connections[task] = False
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._connections.pop(task, None)
            if self.metrics:
                self.metrics.connections.dec()
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def dispatch(self, line: bytes, peer: object = "") -> bytes:
        """One request line in, one reply line out; every failure becomes an error reply."""
        started = time.perf_counter()
        op, msg_id = "invalid", None
        try:
            request = protocol.decode_request(line)
            op, msg_id = request.op, request.msg_id
            if op == "grant":
                reply = protocol.grant_reply(request.msg_id, await self.service.grant(request.asks))
            elif op == "feedback":
                counted = await self.service.feedback(request.outcomes)
                reply = protocol.ok_reply(request.msg_id, counted=counted)
            elif op == "admin":
                assert request.admin is not None
                reply = protocol.ok_reply(request.msg_id, **await self._admin(request.admin, peer, request.msg_id))
            elif op == "hello":
                reply = protocol.ok_reply(request.msg_id, server="policyd", versions=list(protocol.SUPPORTED))
            else:
                reply = protocol.ok_reply(request.msg_id, time=self.service.clock())
        except protocol.ProtocolError as exc:
            log.warning("protocol: %s from %s: %s", exc.code, peer, exc)
            self._count_error(exc.code)
            reply = protocol.error_reply(exc.msg_id, exc.code, str(exc))
        except StoreError as exc:
            log.error("state backend failed serving %s from %s: %s", op, peer, exc)
            self._count_error("unavailable")
            reply = protocol.error_reply(msg_id, "unavailable", str(exc))
        except Exception as exc:   # never let one request take the daemon down
            log.exception("internal error serving %s from %s", op, peer)
            self._count_error("internal")
            reply = protocol.error_reply(msg_id, "internal", f"internal error: {type(exc).__name__}")
        if self.metrics:
            self.metrics.latency.labels(op).observe(time.perf_counter() - started)
        return reply

    async def _admin(self, admin: protocol.AdminRequest, peer: object, msg_id: Any) -> dict[str, Any]:
        """The operator commands of `policyd` (policy.operations), for the MTA's console."""
        service = self.service
        selector = operations.Selector(**admin.selector)
        try:
            if admin.command == "status":
                return await operations.status(service, selector)
            if admin.command == "history":
                return {"actions": await operations.history(service, selector, admin.limit)}
            if admin.command == "explain":
                return {"time": service.clock(), "selector": str(selector.key()),
                        "pairs": await service.explain(selector.key(), admin.limit)}
            keys = await operations.apply(service, admin.command, selector, duration=admin.duration, day=admin.day,
                                          reason=admin.reason, force=admin.force)
        except operations.OperationError as exc:
            raise protocol.ProtocolError("bad_request", str(exc), msg_id) from None
        except ValueError as exc:        # a selector that names nothing, a bad duration
            raise protocol.ProtocolError("bad_request", str(exc), msg_id) from None
        log.info("admin %s by %s: %s (%s)", admin.command, peer, ", ".join(map(str, keys)), admin.reason or "no reason")
        return {"changed": [str(k) for k in keys]}

    def _count_error(self, code: str) -> None:
        if self.metrics:
            self.metrics.errors.labels(code).inc()


def _remove_stale_socket(path: str) -> None:
    """A socket file left by a daemon that died would make bind() fail; a live one is kept."""
    try:
        if not stat.S_ISSOCK(os.stat(path).st_mode):
            return
    except FileNotFoundError:
        pass
    else:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)
        else:
            raise OSError(f"{path}: another process is listening there")
        finally:
            probe.close()
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
