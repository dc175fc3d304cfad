"""The delivery journal: recipients delivered just before a crash are not sent again."""

from __future__ import annotations

import asyncio
import os

from mta.spool.journal import SEGMENT_BYTES, DeliveryJournal, _encode, read_segment
from mta.spool.store import SpoolStore


def test_records_survive_and_torn_ones_are_skipped(tmp_path) -> None:
    good = _encode(41) + _encode(42)
    torn = bytearray(_encode(43))
    torn[3] ^= 0xFF                              # a half-written id must not be read as another one
    assert read_segment(good + bytes(torn) + bytes(64)) == [41, 42]


async def test_noted_ids_are_durable_by_the_next_loop_iteration(tmp_path) -> None:
    journal = DeliveryJournal(str(tmp_path))
    journal.open()
    token = journal.note([7, 8, 9])
    await asyncio.sleep(0)                       # the flush runs at the end of this iteration
    assert DeliveryJournal(str(tmp_path)).recorded() == [7, 8, 9]
    journal.settle(token, 3)
    journal.close()


async def test_segments_take_turns_and_are_wiped_once_settled(tmp_path) -> None:
    journal = DeliveryJournal(str(tmp_path))
    journal.open()
    per_batch = 1000
    batches = (SEGMENT_BYTES * 3 // 4) // (16 * per_batch) + 1
    tokens = []
    for b in range(batches):                     # fills segment 0 past three quarters
        tokens.append(journal.note(range(b * per_batch + 1, (b + 1) * per_batch + 1)))
        await asyncio.sleep(0)
    assert set(tokens) == {0}
    assert journal.note([10**9]) == 1            # the next ones go to the other segment
    await asyncio.sleep(0)
    assert len(DeliveryJournal(str(tmp_path)).recorded()) == batches * per_batch + 1
    for token in tokens:                         # the spool holds them all now: segment 0 is wiped
        journal.settle(token, per_batch)
    assert DeliveryJournal(str(tmp_path)).recorded() == [10**9]
    journal.close()


def test_recovery_finishes_journaled_recipients_instead_of_requeueing_them(tmp_path) -> None:
    from mta.model import NewMessage

    store = SpoolStore(str(tmp_path))
    msg = NewMessage(queue_id="Q1", sender="a@sender.example", recipients=["x@example.test", "y@example.test"],
                     body=b"Subject: t\r\n\r\nhi\r\n", created=0.0, stream="transactional", priority=0, tenant="",
                     pool="default", sending_domain="sender.example", header_message_id="<1@x>")
    store.begin()
    _mid, rcpts = store.insert(msg, 0.0)
    store.mark_attempting([r.id for r in rcpts])
    store.commit()
    store.begin()
    report = store.recover(delivered=[rcpts[0].id, 999999])    # x was delivered; 999999 no longer exists
    store.commit()
    assert report.journaled == 1
    assert report.possible_duplicates == 1                      # only y may have been sent twice
    left = store.db.execute("SELECT address FROM recipients").fetchall()
    assert left == [("y@example.test",)]
    store.close()
    assert not os.path.exists(tmp_path / "delivered.0")         # the store does not touch the journal
