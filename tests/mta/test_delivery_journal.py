"""The delivery journal: what was delivered just before a crash is not sent again, and what may
have been is counted."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

from mta.model import NewMessage
from mta.spool.journal import ATTEMPT, DELIVERED, SEGMENT_BYTES, DeliveryJournal, Recorded, encode
from mta.spool.store import SpoolStore


def test_torn_notes_are_skipped_and_the_last_note_of_a_recipient_counts() -> None:
    torn = bytearray(encode(43, 1, DELIVERED))
    torn[3] ^= 0xFF                              # a half-written id must not be read as another one
    found = Recorded()
    found.add(encode(41, 1, ATTEMPT) + encode(41, 2, DELIVERED) + encode(42, 3, ATTEMPT) + bytes(torn) + bytes(48))
    assert found.delivered == {41} and found.in_doubt == {42}


async def test_an_attempt_note_is_durable_before_data_may_go(tmp_path) -> None:
    journal = DeliveryJournal(str(tmp_path))
    journal.open()
    token, synced = journal.attempting([7, 8])
    assert not synced.done()
    await synced                                 # written and synced now
    assert synced.done() and journal.syncs == 1
    assert DeliveryJournal(str(tmp_path)).recorded().in_doubt == {7, 8}
    journal.delivered([7])
    journal.settle(token, [7, 8])                # the spool has both outcomes now
    await asyncio.sleep(0)
    notes = DeliveryJournal(str(tmp_path)).recorded()
    assert notes.in_doubt == set() and notes.delivered == set()
    token, synced = journal.attempting([8])      # deferred, then attempted again: in doubt again
    await synced
    assert DeliveryJournal(str(tmp_path)).recorded().in_doubt == {8}
    journal.close()


async def test_a_delivered_note_from_the_reply_is_in_the_file_before_the_loop_turns(tmp_path) -> None:
    # Written at once: another process (the daemon after a SIGKILL) reads it from the file
    # without any flush.
    journal = DeliveryJournal(str(tmp_path))
    journal.open()
    token, synced = journal.attempting([7, 8])
    await synced
    journal.delivered_now([7])
    notes = DeliveryJournal(str(tmp_path)).recorded()
    assert notes.delivered == {7} and notes.in_doubt == {8}
    journal.settle(token, [7, 8])
    journal.close()


async def test_only_attempts_are_synced_and_one_sync_serves_every_attempt_written_before_it(tmp_path) -> None:
    journal = DeliveryJournal(str(tmp_path))
    journal.open()
    first = [journal.attempting([i]) for i in (1, 2, 3)]      # three sessions' MAIL, RCPT, DATA travel
    await asyncio.sleep(0)                                    # written at the turn's end, not synced
    assert journal.syncs == 0 and DeliveryJournal(str(tmp_path)).recorded().in_doubt == {1, 2, 3}
    await first[1][1]                                         # the first 354: one sync for all three
    await first[0][1]
    await first[2][1]
    assert journal.syncs == 1 and all(durable.done() for _token, durable in first)
    journal.delivered_now([1])                                # replies and outcomes: no sync
    journal.delivered([2])
    for recipient_id, (token, _durable) in zip((1, 2, 3), first, strict=True):
        journal.settle(token, [recipient_id])
    await asyncio.sleep(0)
    assert journal.syncs == 1
    notes = DeliveryJournal(str(tmp_path)).recorded()
    assert notes.in_doubt == set() and notes.delivered == set()    # settled last
    later = journal.attempting([4])                           # a note after the sync needs its own
    assert not later[1].done()
    await later[1]
    assert journal.syncs == 2
    journal.close()


async def test_segments_take_turns_and_are_wiped_once_every_attempt_is_settled(tmp_path) -> None:
    journal = DeliveryJournal(str(tmp_path))
    journal.open()
    per_batch = 2000
    batches = (SEGMENT_BYTES * 3 // 4) // (24 * per_batch) + 1
    tokens = []
    for b in range(batches):                     # fills segment 0 past three quarters
        ids = range(b * per_batch + 1, (b + 1) * per_batch + 1)
        token, synced = journal.attempting(ids)
        tokens.append((token, list(ids)))
        await synced
    assert {t for t, _ids in tokens} == {0}
    token, synced = journal.attempting([10**9])  # the next notes go to the other segment
    assert token == 1
    await synced
    assert len(DeliveryJournal(str(tmp_path)).recorded().in_doubt) == batches * per_batch + 1
    for t, ids in tokens:                        # every attempt of segment 0 settled: it is wiped
        journal.settle(t, ids)
    await asyncio.sleep(0)
    assert DeliveryJournal(str(tmp_path)).recorded().in_doubt == {10**9}
    journal.close()


def test_recovery_finishes_delivered_recipients_and_counts_those_in_doubt(tmp_path) -> None:
    store = SpoolStore(str(tmp_path))
    msg = NewMessage(queue_id="Q1", sender="a@sender.example",
                     recipients=["x@example.test", "y@example.test", "z@example.test"],
                     body=b"Subject: t\r\n\r\nhi\r\n", created=0.0, stream="transactional", priority=0, tenant="",
                     pool="default", sending_domain="sender.example", header_message_id="<1@x>")
    msg.claimed_domains = {"example.test"}      # in memory, as the scheduler marks only those
    store.begin()
    _mid, (x, y, z) = store.insert(msg, 0.0)
    store.mark_attempting([x.id, y.id, z.id])
    store.commit()
    store.begin()
    # x delivered, y in doubt, z marked in the spool but settled in the journal (no DATA was sent)
    report = store.recover(delivered=[x.id, 999999], in_doubt=[y.id], noted={x.id, y.id, z.id})
    store.commit()
    assert report.journaled == 1
    assert report.possible_duplicates == 1
    left = store.db.execute("SELECT address FROM recipients ORDER BY id").fetchall()
    assert left == [("y@example.test",), ("z@example.test",)]
    store.begin()
    assert [r.id for _m, r in store.claim("example.test", 1.0, 10)] == [y.id, z.id]
    store.mark_attempting([z.id])
    report = store.recover(noted=set())          # a journal that had no room: the spool's marks count
    store.commit()
    assert report.possible_duplicates == 1
    store.close()


def test_a_late_attempt_mark_does_not_strand_a_deferred_or_held_row(tmp_path) -> None:
    """The attempt mark is a regular spool write and the outcome an urgent one: the outcome may be
    committed first, and the mark must then leave the row waiting (else no claim finds it)."""
    from mta.model import HELD, WAITING, Deferral

    store = SpoolStore(str(tmp_path))
    msg = NewMessage(queue_id="Q2", sender="a@sender.example", recipients=["x@example.test", "y@example.test"],
                     body=b"Subject: t\r\n\r\nhi\r\n", created=0.0, stream="transactional", priority=0, tenant="",
                     pool="default", sending_domain="sender.example", header_message_id="<2@x>")
    msg.claimed_domains = {"example.test"}
    store.begin()
    _mid, (x, y) = store.insert(msg, 0.0)
    store.defer([Deferral(x.id, 1, 5.0, 451, "451 later", "site")])
    store.db.execute("UPDATE recipients SET state = ? WHERE id = ?", (HELD, y.id))
    store.mark_attempting([x.id, y.id])
    store.commit()
    states = dict(store.db.execute("SELECT id, state FROM recipients").fetchall())
    assert states == {x.id: WAITING, y.id: HELD}
    assert [r.id for _m, r in store.claim("example.test", 10.0, 10)] == [x.id]
    store.close()


def test_a_jobs_attempt_is_taken_once() -> None:
    from mta.model import Job, MessageInfo, Recipient

    info = MessageInfo(1, "Q", "a@sender.example", 0.0, 10, "marketing", 5, "", "default", "sender.example", "")
    job = Job(info, "example.test", [Recipient(5, "u@example.test", "example.test")], journal_token=1)
    assert job.take_attempt() == (1, [5])
    assert job.take_attempt() == (-1, [5])      # back in its lane, ended later: nothing to settle again


async def test_each_attempt_is_on_disk_when_its_future_is_done(tmp_path) -> None:
    # Attempt notes made over many loop iterations: no future may be done before its note is durable.
    journal = DeliveryJournal(str(tmp_path))
    journal.open()

    async def attempt(recipient_id: int) -> None:
        for _ in range(recipient_id % 3):
            await asyncio.sleep(0)              # spread the notes over loop iterations
        _token, synced = journal.attempting([recipient_id])
        await synced
        assert recipient_id in DeliveryJournal(str(tmp_path)).recorded().in_doubt

    await asyncio.gather(*(attempt(i) for i in range(1, 200)))
    journal.close()
    assert DeliveryJournal(str(tmp_path)).recorded().in_doubt == set(range(1, 200))


async def test_a_syncer_process_syncs_while_the_loop_goes_on_and_attempts_meanwhile_share_the_next_sync(
        tmp_path) -> None:
    journal = DeliveryJournal(str(tmp_path))
    journal.open()
    assert journal.syncer_pid is not None
    _token, first = journal.attempting([1])
    waiting = asyncio.ensure_future(_wait(first))
    await asyncio.sleep(0)                        # the request is on its way; the loop is free
    assert not first.done()
    later = [journal.attempting([i])[1] for i in (2, 3, 4)]       # written while the sync runs
    await asyncio.gather(waiting, *(_wait(d) for d in later))
    assert all(d.done() for d in [first, *later])
    assert journal.syncs == 2                     # one for the first, one shared by the three after it
    assert DeliveryJournal(str(tmp_path)).recorded().in_doubt == {1, 2, 3, 4}
    pid = journal.syncer_pid
    journal.close()
    assert _gone(pid)                             # exits and is reaped with the journal


async def test_a_lost_syncer_process_leaves_the_syncing_to_the_loop(tmp_path, caplog) -> None:
    journal = DeliveryJournal(str(tmp_path))
    journal.open()
    _token, first = journal.attempting([1])
    await first
    pid = journal.syncer_pid
    os.kill(pid, signal.SIGKILL)
    with caplog.at_level(logging.WARNING, logger="mta.spool"):
        _token, second = journal.attempting([2])
        await asyncio.wait_for(_wait(second), 10)       # heard as lost, then synced here
        assert second.done() and journal.syncer_pid is None
        _token, third = journal.attempting([3])
        await third                               # in the loop from now on
        assert third.done()
    assert sum("syncer process lost" in r.getMessage() for r in caplog.records) == 1
    assert DeliveryJournal(str(tmp_path)).recorded().in_doubt == {1, 2, 3}
    journal.close()
    assert _gone(pid)


async def _wait(durable) -> None:
    await durable


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False
