"""The daemon's control socket (a Unix socket in the spool directory, JSON Lines).

`mta queue flush|retry|delete|hold|release` talk to a running daemon through it, so the change
reaches the in-memory queues too (Postfix's postqueue/postsuper talk to the master the same way).
When no daemon runs, the CLI edits the spool directly instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from typing import TYPE_CHECKING, Any

from mta.events import Event
from mta.queue.siteops import hold_messages

if TYPE_CHECKING:
    from mta.daemon.serve import MtaDaemon

log = logging.getLogger("mta.control")


class ControlServer:
    def __init__(self, path: str, daemon: MtaDaemon) -> None:
        self.path = path
        self.daemon = daemon
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        if os.path.exists(self.path):
            os.unlink(self.path)   # left over from a process that did not stop cleanly
        self.server = await asyncio.start_unix_server(self._handle, self.path)
        os.chmod(self.path, 0o600)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), timeout=30)
            try:
                request = json.loads(line)
                reply = await self.dispatch(request)
            except (ValueError, KeyError, TypeError) as exc:
                reply = {"ok": False, "error": f"bad request: {exc}"}
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    async def dispatch(self, request: dict[str, Any]) -> dict[str, Any]:
        sched = self.daemon.scheduler
        spool = self.daemon.spool
        assert sched is not None and spool is not None
        cmd = request["cmd"]
        ids = [str(q) for q in request.get("queue_ids", [])]
        now = sched.clock()
        if cmd == "flush":
            return {"ok": True, "rescheduled": await sched.flush()}
        if cmd in ("retry", "release"):
            if cmd == "retry":
                domains = await spool.call(lambda s: s.retry_messages(ids, now))
            else:
                domains = await spool.call(lambda s: s.release_held(ids, now))
            for d in domains:
                sched.mark_due(d, now)
            return {"ok": True, "domains": domains}
        if cmd == "hold":
            return {"ok": True, "held": await hold_messages(sched, ids)}
        if cmd == "delete":
            removed = await spool.call(lambda s: s.delete_messages(ids))
            for mid, qid, sender, rcpts in removed:
                sched.cancelled.add(mid)
                for r in rcpts:
                    sched.events.emit(Event("dropped", qid, r, sender, reason="admin", text="deleted by operator"))
            return {"ok": True, "deleted": [r[1] for r in removed]}
        if cmd == "erase":
            try:
                report = await self.daemon.eraser.erase(str(request["address"]))
            except ValueError as exc:
                return {"ok": False, "error": str(exc)}
            return {"ok": True, "report": report.to_json()}
        if cmd == "stats":
            return {"ok": True, "memory": sched.stats()}
        if cmd == "why":
            return {"ok": True, "waiting": sched.why_waiting(ids)}
        return {"ok": False, "error": f"unknown command {cmd!r}"}


async def request(path: str, payload: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
    reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(path), timeout)
    try:
        writer.write(json.dumps(payload).encode() + b"\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout)
        return json.loads(line)
    finally:
        writer.close()


class DaemonUnanswered(Exception):
    """A daemon's control socket exists but the daemon did not answer, or refused; says which."""


def ask_running_daemon(spool_dir: str, payload: dict[str, Any], timeout: float = 60.0) -> dict[str, Any] | None:
    """The running daemon's reply to `payload` (without "ok"), or None when no daemon runs (no
    control socket): the command line then works on the spool itself. Blocking (its own loop)."""
    sock = os.path.join(spool_dir, "control.sock")
    if not os.path.exists(sock):
        return None
    try:
        reply = asyncio.run(request(sock, payload, timeout=timeout))
    except (OSError, TimeoutError) as exc:
        raise DaemonUnanswered(f"daemon control socket {sock} did not answer ({exc}); "
                               "is `mta serve` running?") from None
    if not reply.get("ok"):
        raise DaemonUnanswered(str(reply.get("error")))
    return {k: v for k, v in reply.items() if k != "ok"}
