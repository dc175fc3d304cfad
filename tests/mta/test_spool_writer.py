"""The spool's group commit: many operations in one transaction, and one that raises sinks none
of the others."""

from __future__ import annotations

import asyncio

import pytest

from mta.spool.store import SpoolStore
from mta.spool.writer import Spool


def _meta(key: str, value: str):
    def write(store: SpoolStore) -> str:
        store.set_meta(key, value)
        return value
    return write


def _broken(store: SpoolStore) -> None:
    store.set_meta("half", "written")        # undone with the operation that failed
    raise ValueError("bad operation")


async def test_an_operation_that_raises_sinks_none_of_its_group(tmp_path) -> None:
    commits: list[int] = []
    spool = Spool(str(tmp_path), on_commit=lambda ops, _seconds: commits.append(ops))
    spool.start()
    try:
        ok = [spool.submit(_meta(f"k{i}", f"v{i}")) for i in range(5)]
        bad = spool.submit(_broken)
        more = [spool.submit(_meta(f"m{i}", f"w{i}")) for i in range(5)]
        assert await asyncio.gather(*ok, *more) == [f"v{i}" for i in range(5)] + [f"w{i}" for i in range(5)]
        with pytest.raises(ValueError, match="bad operation"):
            await bad
        stored = await spool.read(lambda s: [s.get_meta(k) for k in ("k0", "k4", "m0", "m4", "half")])
        assert stored == ["v0", "v4", "w0", "w4", None]
        assert sum(commits) == 11
    finally:
        await spool.close()


def test_finish_removes_a_message_with_its_last_recipient(tmp_path) -> None:
    from mta.model import NewMessage

    store = SpoolStore(str(tmp_path))

    def new(qid: str, rcpts: list[str]) -> NewMessage:
        return NewMessage(queue_id=qid, sender="a@sender.example", recipients=rcpts, body=b"Subject: t\r\n\r\nhi\r\n",
                          created=0.0, stream="transactional", priority=0, tenant="", pool="default",
                          sending_domain="sender.example", header_message_id=f"<{qid}@x>")
    store.begin()
    m1, (a, b) = store.insert(new("Q1", ["a@example.test", "b@example.test"]), 0.0)
    m2, (c,) = store.insert(new("Q2", ["c@example.test"]), 0.0)
    store.commit()
    store.begin()
    assert store.finish([a.id, c.id]) == [m2]           # Q1 still has b
    assert store.finish([]) == []
    store.commit()
    assert store.body(m1) is not None and store.body(m2) is None
    store.begin()
    assert store.finish([b.id, 10**9]) == [m1]         # an unknown id is no matter
    store.commit()
    assert store.db.execute("SELECT count(*) FROM messages").fetchone() == (0,)
    assert store.db.execute("SELECT count(*) FROM bodies").fetchone() == (0,)
    store.close()
