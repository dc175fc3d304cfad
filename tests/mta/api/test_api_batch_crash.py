"""A batch cut short by a crash: its repeat with the same Idempotency-Key queues only what the
first attempt did not (each message's record is written in the message's own transaction)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3

import aiohttp

from tests.mta.api.conftest import make_keys, simple
from tests.mta.conftest import base_config, write_config
from tests.mta.proc import MtaProcess
from tests.support.receiver import free_port

N = 600


async def test_a_repeat_of_a_batch_killed_halfway_queues_each_message_once(tmp_path, world, dns_server, mx_port):
    dns_server.servfail("example.test")       # nothing leaves: the spool shows every copy queued
    api_port = free_port(["127.0.0.1"])
    cfg = base_config(str(tmp_path), dns_server, mx_port, api={"listen": f"127.0.0.1:{api_port}"})
    path = write_config(str(tmp_path), cfg)
    host, port = cfg["submission"]["listen"][0].rsplit(":", 1)
    spool = cfg["mta"]["spool_dir"]
    proc = MtaProcess(path, os.path.join(str(tmp_path), "mta.log")).start((host, int(port)))
    await _listening("127.0.0.1", api_port)
    keys = make_keys(spool)
    base = f"http://127.0.0.1:{api_port}"
    headers = {"Authorization": f"Bearer {keys['a']}", "Idempotency-Key": "import-7"}
    batch = {"messages": [simple(to=f"user{i}@example.test", subject=f"n{i}") for i in range(N)]}
    try:
        async with aiohttp.ClientSession() as session:
            first = asyncio.create_task(session.post(base + "/v1/messages/batch", json=batch, headers=headers))
            # Kill the daemon once part of the batch is queued (the event log is buffered, so
            # look at the spool itself).
            for _ in range(400):
                await asyncio.sleep(0.025)
                if _queued(spool) >= N // 10:
                    break
            proc.kill9()
            with contextlib.suppress(aiohttp.ClientError):
                await first
            cut_short = _queued(spool)
            assert 0 < cut_short < N, cut_short
            proc.start((host, int(port)))
            await _listening("127.0.0.1", api_port)      # the API listener comes up after SMTP's
            async with session.post(base + "/v1/messages/batch", json=batch, headers=headers) as resp:
                assert resp.status == 200
                body = await resp.json()
            ids = [r["id"] for r in body["results"]]
            assert len(set(ids)) == N and body["accepted"] == N
            assert sorted(_queue_ids(spool)) == sorted(ids)      # each message queued once
            # A third time: the whole answer again, nothing more queued.
            async with session.post(base + "/v1/messages/batch", json=batch, headers=headers) as resp:
                again = await resp.json()
                assert resp.headers.get("Idempotent-Replayed") == "true"
            assert [r["id"] for r in again["results"]] == ids
    finally:
        proc.terminate()


async def _listening(host: str, port: int, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            _reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            assert asyncio.get_running_loop().time() < deadline, f"nothing listens on {host}:{port}"
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return


def _queue_ids(spool_dir: str) -> list[str]:
    db = sqlite3.connect(f"file:{os.path.join(spool_dir, 'queue.db')}?mode=ro", uri=True, timeout=5)
    try:
        return [row[0] for row in db.execute("SELECT queue_id FROM messages")]
    except sqlite3.OperationalError:        # not created yet
        return []
    finally:
        db.close()


def _queued(spool_dir: str) -> int:
    return len(_queue_ids(spool_dir))
