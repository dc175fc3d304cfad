"""The parts of an erasure on their own: which bytes name an address, event log files rewritten
(plain and gzip, other lines kept), the hashed suppression that still matches, and SQLite's free
pages scrubbed."""

from __future__ import annotations

import gzip
import os
import sqlite3
from pathlib import Path

import pytest

from mta.erasure.files import erase_event_log, event_log_files
from mta.erasure.match import AddressMatcher
from mta.erasure.stores import scrub_free_pages
from mta.spool.store import SpoolStore
from mta.spool.suppression import (
    Suppression,
    SuppressionFilter,
    add,
    hash_entries,
    hashed_address,
    listing,
    lookup,
    remove,
)


def test_the_matcher_finds_the_address_and_not_longer_ones() -> None:
    m = AddressMatcher("<Ann@Example.test>")
    assert m.in_text('{"recipient":"ann@example.test"}') and m.in_text("550 <ANN@EXAMPLE.TEST> unknown")
    assert not m.in_text("joann@example.test") and not m.in_text("ann@example.test.evil")
    assert not m.in_text("ann@example.testing") and m.in_text("mail to ann@example.test.")
    with pytest.raises(ValueError):
        AddressMatcher("no address")


def test_event_logs_lose_the_lines_that_name_the_address_and_keep_the_rest(tmp_path: Path) -> None:
    live = tmp_path / "events.jsonl"
    live.write_text('{"recipient":"ann@x.test"}\n{"recipient":"bob@x.test"}\n')
    (tmp_path / "events.jsonl.1").write_text('{"recipient":"joann@x.test"}\n')
    with gzip.open(tmp_path / "events.jsonl.2.gz", "wt") as f:
        f.write('{"text":"550 <ANN@x.test>"}\n{"recipient":"cat@x.test"}\n')
    (tmp_path / "events.jsonl.3.xz").write_bytes(b"\xfd7zXZ")
    (tmp_path / "other.jsonl").write_text('{"recipient":"ann@x.test"}\n')         # not the event log
    assert [os.path.basename(p) for p in event_log_files(str(live))] == [
        "events.jsonl", "events.jsonl.1", "events.jsonl.2.gz", "events.jsonl.3.xz"]
    result = erase_event_log(str(live), AddressMatcher("ann@x.test"))
    assert result.lines == 2 and len(result.files) == 2 and result.skipped == [str(tmp_path / "events.jsonl.3.xz")]
    assert live.read_text() == '{"recipient":"bob@x.test"}\n'
    assert (tmp_path / "events.jsonl.1").read_text() == '{"recipient":"joann@x.test"}\n'
    with gzip.open(tmp_path / "events.jsonl.2.gz", "rt") as f:
        assert f.read() == '{"recipient":"cat@x.test"}\n'
    assert "ann@x.test" in (tmp_path / "other.jsonl").read_text()
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".erasing")]


def test_a_hashed_suppression_still_stops_the_address(tmp_path: Path) -> None:
    store = SpoolStore(str(tmp_path))
    db = store.db
    add(db, Suppression("shop", "Ann@X.test", "complaint", 1.0, detail="complaint about ann@x.test"))
    add(db, Suppression("", "ann@x.test", "hard_bounce", 1.0))
    early = SuppressionFilter()
    early.sync(db)
    assert hash_entries(db, "ANN@x.test") == 2
    rows = listing(db)
    assert {r.address for r in rows} == {hashed_address("ann@x.test")} and {r.detail for r in rows} == {""}
    found = lookup(db, "<ann@X.TEST>", "shop", 2.0)
    assert found is not None and found.reason == "complaint"
    later = SuppressionFilter()
    later.sync(db)                                  # a daemon started after the erasure
    assert later.may_contain("Ann@x.test") and early.may_contain("ann@x.test")
    assert not later.may_contain("bob@x.test")
    assert len(listing(db, address="ann@x.test")) == 2
    assert remove(db, "ann@x.test", "shop") == 1 and lookup(db, "ann@x.test", "shop", 2.0).reason == "hard_bounce"
    store.close()


def test_scrubbing_overwrites_the_free_pages(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA secure_delete = FAST")       # as our stores run where the build's default is off
    db.execute("CREATE TABLE t (b BLOB)")
    db.execute("INSERT INTO t VALUES (?)", (b"secret-ann@x.test " * 5000,))
    db.execute("DELETE FROM t")                     # FAST: zeroed in the table's page, not on the free list
    db.execute("PRAGMA wal_checkpoint")
    assert b"secret-ann@x.test" in Path(path).read_bytes()
    assert scrub_free_pages(db) > 0
    db.close()
    assert b"secret-ann@x.test" not in Path(path).read_bytes()
