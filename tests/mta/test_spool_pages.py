"""The spool's page size and checkpoint interval: set for a new spool, kept for an old one."""

from __future__ import annotations

import sqlite3
import time

from mta.model import NewMessage
from mta.spool.store import PAGE_SIZE, WAL_CHECKPOINT_PAGES, SpoolStore


def _message(qid: str, body: bytes) -> NewMessage:
    return NewMessage(qid, "s@sender.test", ["r@example.test"], body, time.time(), "bulk", 0, "", "default",
                      "sender.test", f"<{qid}@sender.test>")


def test_a_new_spool_has_large_pages_and_a_longer_wal(tmp_path):
    store = SpoolStore(str(tmp_path))
    assert store.db.execute("PRAGMA page_size").fetchone()[0] == PAGE_SIZE == 8192
    assert store.db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == WAL_CHECKPOINT_PAGES
    store.close()


def test_a_spool_made_with_small_pages_keeps_them_and_its_mail(tmp_path):
    # A spool written by an older version (4 KB pages, WAL already on) opens as it is.
    old = sqlite3.connect(tmp_path / "queue.db")
    old.execute("PRAGMA page_size = 4096")
    old.execute("PRAGMA journal_mode = WAL")
    old.close()
    store = SpoolStore(str(tmp_path))
    body = b"Subject: x\r\n\r\n" + b"y" * 20000 + b"\r\n"
    store.begin()
    mid, _ = store.insert(_message("Q1", body), time.time())
    store.commit()
    store.close()
    again = SpoolStore(str(tmp_path))
    assert again.db.execute("PRAGMA page_size").fetchone()[0] == 4096
    assert again.body(mid) == body
    again.close()
