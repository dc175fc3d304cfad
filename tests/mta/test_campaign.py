"""A message's campaign (tag): read from the submission header, removed before sending, kept in
the spool (also in a spool an older version wrote), and carried in events and delivery records."""

from __future__ import annotations

import sqlite3

import pytest

from mta.config import ConfigError, load_config
from mta.spool.store import SpoolStore
from mta.submission.headers import campaign_name, read_facts
from tests.mta.conftest import base_config, message, write_config
from tests.support.waiting import until

# The two tables as a spool written before the campaign (and the delivery's sender) existed.
OLD_SCHEMA = """
CREATE TABLE messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT, queue_id TEXT NOT NULL UNIQUE, sender TEXT NOT NULL,
    created REAL NOT NULL, size INTEGER NOT NULL, stream TEXT NOT NULL, priority INTEGER NOT NULL,
    tenant TEXT NOT NULL, pool TEXT NOT NULL, sending_domain TEXT NOT NULL, header_message_id TEXT NOT NULL,
    smtputf8 INTEGER NOT NULL, client TEXT NOT NULL, auth_user TEXT NOT NULL, warned INTEGER NOT NULL DEFAULT 0);
CREATE TABLE deliveries (
    queue_id TEXT NOT NULL, recipient TEXT NOT NULL, time REAL NOT NULL, source TEXT NOT NULL, site TEXT NOT NULL,
    mx_hosts TEXT NOT NULL, sending_domain TEXT NOT NULL, tenant TEXT NOT NULL, stream TEXT NOT NULL,
    header_message_id TEXT NOT NULL);
INSERT INTO messages (queue_id, sender, created, size, stream, priority, tenant, pool, sending_domain,
    header_message_id, smtputf8, client, auth_user) VALUES
    ('OLD1', 'a@sender.example', 1.0, 10, 'marketing', 5, '', 'default', 'sender.example', '<m@x>', 0, '', '');
"""


def old_spool(path: str) -> None:
    db = sqlite3.connect(f"{path}/queue.db")
    db.executescript(OLD_SCHEMA)
    db.commit()
    db.close()


def columns(path: str, table: str) -> set[str]:
    db = sqlite3.connect(f"{path}/queue.db")
    try:
        return {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
    finally:
        db.close()


def test_campaign_header_is_read_and_tidied():
    head = b"From: <a@sender.example>\r\nX-Campaign:  spring\r\n  sale|2026\x01 \r\nSubject: s\r\n"
    assert read_facts(head, "X-Stream", "X-Campaign").campaign == "spring sale 2026"
    assert read_facts(head, "X-Stream", "").campaign == ""
    assert campaign_name("x" * 300) == "x" * 100


def test_campaign_header_must_be_a_header_name(tmp_path, dns_server, mx_port):
    cfg = base_config(str(tmp_path), dns_server, mx_port, submission={"campaign_header": "X Campaign:"})
    with pytest.raises(ConfigError, match=r"submission\.campaign_header"):
        load_config(write_config(str(tmp_path), cfg))
    cfg = base_config(str(tmp_path), dns_server, mx_port, submission={"campaign_header": "x-stream"})
    with pytest.raises(ConfigError, match=r"submission\.campaign_header"):
        load_config(write_config(str(tmp_path), cfg))


def test_an_old_spool_gets_the_new_columns(tmp_path):
    old_spool(str(tmp_path))
    reader = SpoolStore(str(tmp_path), readonly=True)       # before any upgrade: '' in their place
    try:
        assert reader.message(1).campaign == ""
    finally:
        reader.close()
    SpoolStore(str(tmp_path)).close()
    assert {"campaign"} <= columns(str(tmp_path), "messages")
    assert {"sender", "campaign"} <= columns(str(tmp_path), "deliveries")
    store = SpoolStore(str(tmp_path))                       # a second open finds nothing to do
    try:
        info = store.message(1)
        assert info is not None and info.queue_id == "OLD1" and info.campaign == ""
        store.record_deliveries([("OLD1", "u@example.test", 2.0, "ip1", "site", "mx", "sender.example", "",
                                  "marketing", "<m@x>", "a@sender.example", "spring")])
    finally:
        store.close()


async def test_campaign_is_stored_removed_and_in_events(start_mta, world):
    rx = world.domain("example.test")
    mta = await start_mta()
    await mta.send("App@Sender.example", ["u@example.test"], message(extra_headers="X-Campaign: spring-sale\r\n"))
    received = (await rx.await_for(1))[0]
    assert b"X-Campaign" not in received.data
    events = await mta.wait_event(lambda e: e["event"] in ("accepted", "delivered"), n=2)
    assert {e["campaign"] for e in events} == {"spring-sale"}

    def delivery_row() -> tuple | None:
        # The delivered event comes as the reply is read; the row once the spool commits it.
        store = SpoolStore(mta.spool_dir, readonly=True)
        try:
            return store.db.execute("SELECT sender, campaign FROM deliveries").fetchone()
        finally:
            store.close()

    row = await until(delivery_row, "a row in the delivery log", timeout=30)
    assert tuple(row) == ("app@sender.example", "spring-sale")


async def test_campaign_header_name_is_configurable(start_mta, world):
    rx = world.domain("example.test")
    mta = await start_mta(submission={"campaign_header": "X-Mailing"})
    await mta.send("app@sender.example", ["u@example.test"],
                   message(extra_headers="X-Mailing: weekly\r\nX-Campaign: kept\r\n"))
    received = (await rx.await_for(1))[0]
    assert b"X-Mailing" not in received.data and b"X-Campaign: kept" in received.data
    [ev] = await mta.wait_event(lambda e: e["event"] == "delivered")
    assert ev["campaign"] == "weekly"
