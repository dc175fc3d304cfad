"""The webhook outbox on a real SQLite file: batches keep their id and rows until delivered,
across a reopen (restart); expiry drops old rows and never reuses an id for a different body."""

from __future__ import annotations

from pathlib import Path

from mta.webhooks.outbox import OutboxStore


def rows(endpoint: str, n: int, start: int = 0, created: float = 100.0) -> list[tuple[str, float, str]]:
    return [(endpoint, created + i, f'{{"n":{start + i}}}') for i in range(n)]


def test_a_batch_keeps_its_id_and_rows_until_deleted_even_when_more_rows_arrive(tmp_path: Path) -> None:
    store = OutboxStore(str(tmp_path / "webhooks.db"))
    store.insert(rows("a", 3))
    first = store.next_batch("a", limit=2)
    assert first is not None and first.events == ['{"n":0}', '{"n":1}'] and first.id.startswith("msg_")
    store.insert(rows("a", 2, start=3))
    again = store.next_batch("a", limit=10)           # a retry: the same batch, not the bigger one
    assert again == first
    assert store.delete_batch("a", first.id) == 2
    second = store.next_batch("a", limit=10)
    assert second is not None and second.id != first.id
    assert second.events == ['{"n":2}', '{"n":3}', '{"n":4}']


def test_endpoints_have_separate_queues(tmp_path: Path) -> None:
    store = OutboxStore(str(tmp_path / "webhooks.db"))
    store.insert(rows("a", 2) + rows("b", 1, start=10))
    a, b = store.next_batch("a", 10), store.next_batch("b", 10)
    assert a is not None and b is not None and len(a.events) == 2 and b.events == ['{"n":10}']
    assert store.counts() == {"a": 2, "b": 1}
    assert store.next_batch("c", 10) is None


def test_the_batch_under_way_survives_a_reopen_with_its_id(tmp_path: Path) -> None:
    path = str(tmp_path / "webhooks.db")
    store = OutboxStore(path)
    store.insert(rows("a", 3))
    batch = store.next_batch("a", limit=3)
    store.close()
    reopened = OutboxStore(path)
    assert reopened.counts() == {"a": 3}
    assert reopened.next_batch("a", limit=1) == batch       # even with a smaller batch_size now


def test_expiry_drops_old_rows_and_what_is_left_of_their_batch_gets_a_new_id(tmp_path: Path) -> None:
    store = OutboxStore(str(tmp_path / "webhooks.db"))
    store.insert(rows("a", 4, created=100.0))               # created 100, 101, 102, 103
    batch = store.next_batch("a", limit=3)
    assert batch is not None and batch.oldest == 100.0
    assert store.expire("a", before=102.0) == 2
    left = store.next_batch("a", limit=3)
    assert left is not None and left.id != batch.id          # a receiver that saw batch.id must not skip these
    assert left.events == ['{"n":2}', '{"n":3}'] and left.oldest == 102.0


def test_delete_endpoint_removes_only_its_rows(tmp_path: Path) -> None:
    store = OutboxStore(str(tmp_path / "webhooks.db"))
    store.insert(rows("gone", 2) + rows("kept", 1))
    assert store.delete_endpoint("gone") == 2
    assert store.counts() == {"kept": 1}


def test_expiry_works_in_chunks_oldest_first(tmp_path: Path) -> None:
    store = OutboxStore(str(tmp_path / "webhooks.db"))
    store.insert(rows("a", 5, created=100.0))               # created 100 .. 104
    assert store.expire("a", before=104.0, limit=3) == 3
    assert store.expire("a", before=104.0, limit=3) == 1
    assert store.expire("a", before=104.0, limit=3) == 0
    left = store.next_batch("a", 10)
    assert left is not None and left.events == ['{"n":4}']
