"""DKIM signing in a worker process, so that the RSA work runs on the second core.

An rsa-2048 signature of a 20 KB message costs about 0.4 ms of CPU, during which `cryptography`
holds the GIL: in the event loop's process (or a thread of it) that time is taken from accepting
and delivering mail. Here the event loop hands the message to one worker process over a socket
pair and awaits the signature field(s) before its 250; the worker holds its own `DkimSigner` over
the same key configs, and signs with the timestamp the caller gives, so the result is what the
in-process signer would have made.

The in-process signer stays the fallback: while the worker starts, after it died (a new one is
started on the next message), and for a domain without keys (nothing to send). A reload of the
keys (SIGHUP) starts a new worker, as the old one holds the old keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import multiprocessing
import os
import pickle
import socket
import struct
from collections.abc import Callable

from mta.compliance.dkim.config import DkimKeyConfig
from mta.compliance.dkim.signer import DkimSigner

log = logging.getLogger("mta.dkim")

_FRAME = struct.Struct("!QI")       # request id, payload length


def wanted() -> bool:
    """A worker pays off only with a second core to run on."""
    return (os.cpu_count() or 1) > 1


class WorkerGone(Exception):
    """The worker process ended before it answered."""


class SigningWorker:
    """`await sign(message, domain)`: the fields `signer.sign(message, domain)` would give."""

    def __init__(self, signer: DkimSigner, clock: Callable[[], float]) -> None:
        self.signer = signer
        self.clock = clock
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[tuple[bool, bytes | str]]] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._process: multiprocessing.process.BaseProcess | None = None
        self._starting: asyncio.Task[None] | None = None
        self._generation = -1
        self._closed = False
        self.offloaded = 0          # messages the worker signed

    async def sign(self, message: bytes, domain: str) -> bytes:
        timestamp = int(self.clock())
        if self._closed or not self.signer.keys_for(domain):
            return self.signer.sign(message, domain, timestamp)
        if self.signer.generation != self._generation:
            self._restart()
        writer = self._writer
        if writer is None or writer.is_closing():
            if self._starting is None:
                self._restart()
            return self.signer.sign(message, domain, timestamp)
        request = next(self._ids)
        payload = pickle.dumps((timestamp, domain, message), protocol=5)
        future: asyncio.Future[tuple[bool, bytes | str]] = asyncio.get_running_loop().create_future()
        self._pending[request] = future
        writer.writelines((_FRAME.pack(request, len(payload)), payload))
        try:
            ok, result = await future
        except WorkerGone:
            return self.signer.sign(message, domain, timestamp)
        if not ok:      # the worker's signer raised: raise the same way here
            log.warning("DKIM worker could not sign (%s); signing in-process", result)
            return self.signer.sign(message, domain, timestamp)
        self.offloaded += 1
        assert isinstance(result, bytes)
        return result

    # ------------------------------------------------------------------ the process
    def _restart(self) -> None:
        """Starts a worker over the signer's current keys (in the background: until it answers,
        messages are signed in-process)."""
        self._stop_process()
        self._generation = self.signer.generation
        self._starting = asyncio.get_running_loop().create_task(self._start(self.signer.configs))

    async def _start(self, configs: list[DkimKeyConfig]) -> None:
        try:
            await self._spawn(configs)
        finally:
            self._starting = None

    async def _spawn(self, configs: list[DkimKeyConfig]) -> None:
        ours, theirs = socket.socketpair()
        try:
            # spawn, not fork: the daemon has threads (the spool writer) and an event loop.
            process = multiprocessing.get_context("spawn").Process(
                target=serve, args=(theirs, configs), name="mta-dkim-worker", daemon=True)
            await asyncio.get_running_loop().run_in_executor(None, process.start)
        except (OSError, RuntimeError) as exc:
            log.warning("DKIM worker did not start (%s); signing in-process", exc)
            ours.close()
            return
        finally:
            theirs.close()
        if self._closed:
            ours.close()
            await asyncio.get_running_loop().run_in_executor(None, _reap, process)
            return
        reader, writer = await asyncio.open_connection(sock=ours)
        self._process, self._writer = process, writer
        asyncio.get_running_loop().create_task(self._read_replies(reader, writer))
        log.info("DKIM signing in worker process %s", process.pid)

    async def _read_replies(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request, size = _FRAME.unpack(await reader.readexactly(_FRAME.size))
                reply = pickle.loads(await reader.readexactly(size))
                future = self._pending.pop(request, None)
                if future is not None and not future.done():
                    future.set_result(reply)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            if self._writer is writer:
                self._writer = None
                if not self._closed:
                    log.warning("DKIM worker process ended; signing in-process until a new one runs")
            writer.close()
            pending, self._pending = self._pending, {}
            for future in pending.values():
                if not future.done():
                    future.set_exception(WorkerGone())

    def _stop_process(self) -> None:
        if self._writer is not None:
            self._writer.close()       # the worker ends on end of file
            self._writer = None
        process, self._process = self._process, None
        if process is not None:
            # Reaped in a thread: joining here would stall the event loop.
            asyncio.get_running_loop().run_in_executor(None, _reap, process)

    async def close(self) -> None:
        self._closed = True
        if self._starting is not None:
            with contextlib.suppress(Exception):
                await self._starting
        self._stop_process()


def _reap(process: multiprocessing.process.BaseProcess) -> None:
    process.join(5)
    if process.is_alive():
        process.kill()
        process.join(5)


# ---------------------------------------------------------------------- in the worker process
def serve(sock: socket.socket, configs: list[DkimKeyConfig]) -> None:
    """The worker's loop: a request is (timestamp, domain, message), a reply (ok, fields or the
    error's text). Ends when the daemon closes its end."""
    signer = DkimSigner(configs)
    stream = sock.makefile("rb")
    try:
        while True:
            head = stream.read(_FRAME.size)
            if len(head) < _FRAME.size:
                return
            request, size = _FRAME.unpack(head)
            timestamp, domain, message = pickle.loads(stream.read(size))
            try:
                reply: tuple[bool, bytes | str] = (True, signer.sign(message, domain, timestamp))
            except Exception as exc:
                reply = (False, f"{type(exc).__name__}: {exc}")
            payload = pickle.dumps(reply, protocol=5)
            sock.sendall(_FRAME.pack(request, len(payload)) + payload)
    except (OSError, EOFError):
        return
    finally:
        stream.close()
        sock.close()
