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


def _new(qid: str, rcpts: list[str], body: bytes = b"Subject: t\r\n\r\nhi\r\n"):
    from mta.model import NewMessage

    return NewMessage(queue_id=qid, sender="a@sender.example", recipients=rcpts, body=body,
                      created=0.0, stream="transactional", priority=0, tenant="", pool="default",
                      sending_domain="sender.example", header_message_id=f"<{qid}@x>")


def _delivery_row(qid: str, rcpt: str) -> tuple:
    return (qid, rcpt, 1.0, "ip1", "site", "mx", "sender.example", "", "transactional", f"<{qid}@x>",
            "a@sender.example", "")


def _rows(store: SpoolStore) -> dict[str, list[tuple]]:
    db = store.db
    return {
        "messages": db.execute("SELECT id, queue_id, size FROM messages ORDER BY id").fetchall(),
        "bodies": db.execute("SELECT id, data FROM bodies ORDER BY id").fetchall(),
        "recipients": db.execute("SELECT id, message, address, state FROM recipients ORDER BY id").fetchall(),
        "deliveries": db.execute("SELECT queue_id, recipient, variant FROM deliveries ORDER BY rowid").fetchall(),
    }


def test_a_groups_writes_go_in_a_few_statements_with_the_rows_of_one_by_one_writes(tmp_path) -> None:
    """Inserts, attempt marks, removals and delivery records of one group are held back and
    written per table at the commit: the statements do not grow with the group, and the rows
    are those that the same calls give outside a group (each at once)."""
    from mta.model import ATTEMPTING, CLAIMED

    def work(store: SpoolStore) -> list:
        answers = []
        for i in range(30):
            msg = _new(f"Q{i}", [f"r{i}@example.test", f"s{i}@example.test"], body=b"x" * (100 + i) + b"\r\n")
            msg.claimed_domains = {"example.test"}
            mid, rcpts = store.insert(msg, 5.0)
            answers.append((mid, [(r.id, r.address) for r in rcpts]))
            store.mark_attempting([r.id for r in rcpts])
            if i % 3 == 0:      # both recipients done: the message goes
                store.finish_later([r.id for r in rcpts])
                store.record_deliveries([_delivery_row(f"Q{i}", r.address) for r in rcpts])
            elif i % 3 == 1:    # one done, one still attempting
                store.finish_later([rcpts[0].id])
        return answers

    one_by_one = SpoolStore(str(tmp_path / "a"))
    expected_answers = work(one_by_one)          # outside a transaction: every write at once
    expected = _rows(one_by_one)
    one_by_one.close()

    grouped = SpoolStore(str(tmp_path / "b"))
    statements: list[str] = []
    grouped.db.set_trace_callback(statements.append)
    grouped.begin()
    answers = work(grouped)
    grouped.commit()
    grouped.db.set_trace_callback(None)
    assert answers == expected_answers
    assert _rows(grouped) == expected
    assert len(expected["messages"]) == 20 and len(expected["deliveries"]) == 20
    states = {row[3] for row in expected["recipients"]}
    assert states == {ATTEMPTING} and CLAIMED not in states
    # BEGIN, the id look-up, 3 inserts, 1 mark, 5 for the removals, 1 delivery insert, COMMIT
    assert len(statements) <= 13, statements
    grouped.close()


def test_assigned_ids_never_reuse_those_of_removed_messages_nor_another_writers(tmp_path) -> None:
    store = SpoolStore(str(tmp_path))
    store.begin()
    m1, (r1,) = store.insert(_new("Q1", ["a@example.test"]), 0.0)
    store.commit()
    store.begin()
    store.finish_later([r1.id])
    store.commit()
    assert _rows(store)["messages"] == []
    other = SpoolStore(str(tmp_path))            # another process (a CLI) writing between groups
    m2, (r2,) = other.insert(_new("Q2", ["b@example.test"]), 0.0)
    other.close()
    store.begin()
    m3, (r3,) = store.insert(_new("Q3", ["c@example.test"]), 0.0)
    store.commit()
    assert m1 < m2 < m3 and r1.id < r2.id < r3.id
    assert [row[1] for row in _rows(store)["messages"]] == ["Q2", "Q3"]
    store.close()


async def test_a_held_write_that_fails_at_the_commit_fails_its_operation_only(tmp_path) -> None:
    """A held-back insert that breaks a constraint fails when the group flushes it; the group
    runs again an operation at a time, and only that operation's caller hears of it."""
    import sqlite3

    spool = Spool(str(tmp_path))
    spool.start()
    try:
        await spool.call(lambda s: s.insert(_new("DUP", ["a@example.test"]), 0.0))
        before = [spool.submit(lambda s, i=i: s.insert(_new(f"A{i}", ["a@example.test"]), 0.0)) for i in range(3)]
        clash = spool.submit(lambda s: s.insert(_new("DUP", ["b@example.test"]), 0.0))
        after = [spool.submit(lambda s, i=i: s.insert(_new(f"B{i}", ["a@example.test"]), 0.0)) for i in range(3)]
        results = await asyncio.gather(*before, *after)
        with pytest.raises(sqlite3.IntegrityError):
            await clash
        stored = await spool.read(lambda s: s.db.execute(
            "SELECT m.id, m.queue_id, r.id FROM messages m JOIN recipients r ON r.message = m.id"
            " ORDER BY m.id").fetchall())
        assert [q for _m, q, _r in stored] == ["DUP", "A0", "A1", "A2", "B0", "B1", "B2"]
        assert [(m, r) for m, _q, r in stored[1:]] == [(mid, rcpts[0].id) for mid, rcpts in results]
    finally:
        await spool.close()


async def test_an_operation_that_raises_after_a_bad_held_write_sinks_none_of_its_group(tmp_path) -> None:
    """An operation whose held-back insert would break a constraint raises something else before
    it returns: its writes are dropped unwritten with it, and the rest of its group commits."""
    spool = Spool(str(tmp_path))
    spool.start()
    try:
        await spool.call(lambda s: s.insert(_new("DUP", ["a@example.test"]), 0.0))

        def insert_then_fail(store: SpoolStore) -> None:
            store.insert(_new("DUP", ["b@example.test"]), 0.0)
            raise ValueError("the operation's own failure")

        ok = [spool.submit(lambda s, i=i: s.insert(_new(f"A{i}", ["a@example.test"]), 0.0)) for i in range(3)]
        bad = spool.submit(insert_then_fail)
        more = [spool.submit(lambda s, i=i: s.insert(_new(f"B{i}", ["a@example.test"]), 0.0)) for i in range(3)]
        assert len(await asyncio.gather(*ok, *more)) == 6
        with pytest.raises(ValueError, match="own failure"):
            await bad
        stored = await spool.read(lambda s: [r[0] for r in s.db.execute("SELECT queue_id FROM messages ORDER BY id")])
        assert stored == ["DUP", "A0", "A1", "A2", "B0", "B1", "B2"]
    finally:
        await spool.close()


def test_held_bodies_go_in_statements_of_a_few_megabytes(tmp_path) -> None:
    """SQLite copies each bound blob until its statement is done: large bodies go one or a few
    per statement, small ones many per statement, and each arrives whole."""
    from mta.spool.heldwrites import BODY_BYTES_PER_STATEMENT

    store = SpoolStore(str(tmp_path))
    statements: list[str] = []
    store.db.set_trace_callback(statements.append)
    large = BODY_BYTES_PER_STATEMENT * 3 // 4
    bodies = [bytes([65 + i]) * large for i in range(3)] + [bytes([97 + i]) * 1000 for i in range(20)]
    store.begin()
    ids = [store.insert(_new(f"Q{i}", ["a@example.test"], body=b), 0.0)[0] for i, b in enumerate(bodies)]
    store.commit()
    store.db.set_trace_callback(None)
    body_inserts = [s for s in statements if s.startswith("INSERT INTO bodies")]
    assert len(body_inserts) == 3        # each large one alone; the last shares with the 20 small ones
    assert [store.body(mid) for mid in ids] == bodies
    store.close()
