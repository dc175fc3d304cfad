"""`mta queue ...`: what operators know from mailq, postqueue and postsuper.

Read-only commands (stats, list, show) read the spool directly, which WAL mode allows while the
daemon writes. Commands that change the queue go through the daemon's control socket when it
runs, so its in-memory queues follow; otherwise they edit the spool directly.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from datetime import UTC, datetime
from typing import Any

from mta.config import Config
from mta.daemon.control import DaemonUnanswered, ask_running_daemon
from mta.model import ATTEMPTING, CLAIMED, HELD, WAITING
from mta.spool.store import SpoolStore

STATE_NAMES = {WAITING: "waiting", CLAIMED: "in memory", ATTEMPTING: "active", HELD: "held"}


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    q = sub.add_parser("queue", help="inspect and manage the queue")
    qs = q.add_subparsers(dest="queue_cmd", required=True)
    p = qs.add_parser("stats", help="queued/deferred/active counts, per site")
    p.add_argument("--json", action="store_true")
    p = qs.add_parser("list", help="queued messages, oldest first (like mailq)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--domain", help="only messages with recipients at this domain")
    p.add_argument("--deferred", action="store_true", help="only messages with a failed attempt")
    p = qs.add_parser("show", help="one message: envelope, recipients, headers")
    p.add_argument("queue_id")
    p.add_argument("--body", action="store_true", help="print the whole message")
    p.add_argument("--json", action="store_true")
    qs.add_parser("flush", help="attempt everything now (postqueue -f)")
    for name, what in (("delete", "remove messages (postsuper -d)"), ("retry", "attempt these messages now"),
                       ("hold", "keep messages from delivery (postsuper -h)"),
                       ("release", "release held messages (postsuper -H)")):
        p = qs.add_parser(name, help=what)
        p.add_argument("queue_ids", nargs="+", metavar="QUEUE_ID")


def run(cfg: Config, args: argparse.Namespace) -> int:
    cmd = args.queue_cmd
    args.events_path = cfg.events_path
    args.spool_dir = cfg.mta.spool_dir
    if cmd in ("stats", "list", "show"):
        try:
            store = SpoolStore(cfg.mta.spool_dir, readonly=True)
        except FileNotFoundError:
            if cmd == "stats":
                return _print_stats(_empty_stats(), args.json)
            if cmd == "show":
                return _show_history(args)
            if args.json:
                print("[]")
                return 0
            print(f"mta: no queue at {cfg.mta.spool_dir}", file=sys.stderr)
            return 1
        try:
            if cmd == "stats":
                return _print_stats(stats(store), args.json)
            if cmd == "list":
                return _list(store, args)
            return _show(store, args)
        finally:
            store.close()
    return _change(cfg, cmd, getattr(args, "queue_ids", []))


# ---------------------------------------------------------------------- stats
def _empty_stats() -> dict[str, Any]:
    return {"messages": 0, "recipients": 0, "queued": 0, "deferred": 0, "active": 0, "held": 0,
            "oldest": None, "possible_duplicates": 0, "sites": {}}


def stats(store: SpoolStore) -> dict[str, Any]:
    out = _empty_stats()
    out["messages"] = store.db.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
    oldest = store.db.execute("SELECT MIN(created) FROM messages").fetchone()[0]
    out["oldest"] = _iso(oldest) if oldest else None
    out["possible_duplicates"] = int(store.get_meta("possible_duplicates") or 0)
    rows = store.db.execute(
        "SELECT CASE WHEN last_site <> '' THEN last_site ELSE domain END, state, attempts > 0, COUNT(*)"
        " FROM recipients GROUP BY 1, 2, 3")
    for site, state, tried, n in rows:
        key = _bucket(state, bool(tried))
        out[key] += n
        out["recipients"] += n
        per = out["sites"].setdefault(site, {"queued": 0, "deferred": 0, "active": 0, "held": 0})
        per[key] += n
    return out


def _bucket(state: int, tried: bool) -> str:
    """held; active (an attempt is in progress now); else deferred (tried before) or queued. A
    recipient the daemon holds in memory waiting for a grant or a connection is not active."""
    if state == HELD:
        return "held"
    if state == ATTEMPTING:
        return "active"
    return "deferred" if tried else "queued"


def _print_stats(s: dict[str, Any], as_json: bool) -> int:
    if as_json:
        print(json.dumps(s, indent=None, sort_keys=True))
        return 0
    print(f"messages {s['messages']}  recipients {s['recipients']}  queued {s['queued']}  "
          f"deferred {s['deferred']}  active {s['active']}  held {s['held']}")
    if s["oldest"]:
        print(f"oldest message: {s['oldest']}")
    if s["possible_duplicates"]:
        print(f"recipients re-queued after a crash (possible duplicates): {s['possible_duplicates']}")
    if s["sites"]:
        print(f"\n{'site':50} {'queued':>8} {'deferred':>8} {'active':>8} {'held':>6}")
        for site, c in sorted(s["sites"].items(), key=lambda kv: -sum(kv[1].values())):
            print(f"{site[:50]:50} {c['queued']:>8} {c['deferred']:>8} {c['active']:>8} {c['held']:>6}")
    return 0


# ---------------------------------------------------------------------- list / show
def _list(store: SpoolStore, args: argparse.Namespace) -> int:
    where, params = [], []
    if args.domain:
        where.append("m.id IN (SELECT message FROM recipients WHERE domain = ?)")
        params.append(args.domain.lower())
    if args.deferred:
        where.append(f"m.id IN (SELECT message FROM recipients WHERE attempts > 0 AND state <> {HELD})")
    sql = ("SELECT m.id, m.queue_id, m.size, m.created, m.sender, m.stream FROM messages m"
           + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY m.created LIMIT ?")
    messages = store.db.execute(sql, [*params, args.limit]).fetchall()
    out = []
    for mid, qid, size, created, sender, stream in messages:
        rcpts = [{"recipient": a, "state": STATE_NAMES.get(st, "?"), "attempts": n, "next_attempt": _iso(na),
                  "last_reply": txt}
                 for a, st, n, na, txt in store.db.execute(
                     "SELECT address, state, attempts, next_attempt, last_text FROM recipients WHERE message = ?"
                     " ORDER BY id", (mid,))]
        out.append({"queue_id": qid, "size": size, "arrival": _iso(created), "sender": sender, "stream": stream,
                    "recipients": rcpts})
    waiting = _ask_why(args.spool_dir, [item["queue_id"] for item in out])
    for item in out:
        item["waiting"] = waiting.get(item["queue_id"], "")
    if args.json:
        print(json.dumps(out))
        return 0
    if not out:
        print("Mail queue is empty")
        return 0
    print(f"{'-Queue ID-':20} {'--Size--':>9} {'----Arrival Time----':24} -Sender/Recipient-------")
    for item in out:
        print(f"{item['queue_id']:20} {item['size']:>9} {item['arrival']:24} {item['sender'] or 'MAILER-DAEMON'}")
        if item["waiting"]:
            print(f"{'':20} waiting: {item['waiting']}")
        for r in item["recipients"]:
            if r["last_reply"]:
                print(f"{'':56}({r['last_reply'][:70]})")
            print(f"{'':56}{r['recipient']}  [{r['state']}, {r['attempts']} attempts]")
        print()
    return 0


def _show(store: SpoolStore, args: argparse.Namespace) -> int:
    """One message in the queue; a message that left it is shown from the event log."""
    row = store.db.execute("SELECT id, queue_id, sender, created, size, stream, tenant, pool, sending_domain,"
                           " client, auth_user FROM messages WHERE queue_id = ?", (args.queue_id.upper(),)).fetchone()
    if row is None:
        return _show_history(args)
    mid = row[0]
    body = store.body(mid) or b""
    info = dict(zip(("queue_id", "sender", "arrival", "size", "stream", "tenant", "pool", "sending_domain",
                     "client", "auth_user"), row[1:], strict=True))
    info["arrival"] = _iso(info["arrival"])
    info["campaign"] = ""
    if store.has_campaign:      # a spool not yet opened by this version has no such column
        info["campaign"] = store.db.execute("SELECT campaign FROM messages WHERE id = ?", (mid,)).fetchone()[0]
    info["recipients"] = [
        {"recipient": a, "state": STATE_NAMES.get(st, "?"), "attempts": n, "next_attempt": _iso(na),
         "last_code": c, "last_reply": t, "last_site": site}
        for a, st, n, na, c, t, site in store.db.execute(
            "SELECT address, state, attempts, next_attempt, last_code, last_text, last_site FROM recipients"
            " WHERE message = ? ORDER BY id", (mid,))]
    head = body.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    info["waiting"] = _ask_why(args.spool_dir, [info["queue_id"]]).get(info["queue_id"], "")
    if args.json:
        info["headers"] = head
        if args.body:
            info["body"] = body.decode("utf-8", "replace")
        print(json.dumps(info))
        return 0
    for k in ("queue_id", "sender", "arrival", "size", "stream", "tenant", "pool", "sending_domain", "campaign",
              "client", "auth_user"):
        if k != "campaign" or info[k]:
            print(f"{k}: {info[k]}")
    if info["waiting"]:
        print(f"waiting: {info['waiting']}")
    for r in info["recipients"]:
        print(f"recipient: {r['recipient']} [{r['state']}, {r['attempts']} attempts, next {r['next_attempt']}]"
              + (f" last reply: {r['last_reply']}" if r["last_reply"] else ""))
    print()
    print(body.decode("utf-8", "replace") if args.body else head)
    return 0


def _ask_why(spool_dir: str, queue_ids: list[str]) -> dict[str, str]:
    """What the running daemon says these messages wait for ({} when no daemon runs)."""
    if not queue_ids:
        return {}
    try:
        reply = ask_running_daemon(spool_dir, {"cmd": "why", "queue_ids": queue_ids}, timeout=10)
    except (DaemonUnanswered, ValueError):
        return {}
    return (reply or {}).get("waiting", {})


def history(events_path: str, queue_id: str) -> list[dict[str, Any]]:
    """The events of one message in the event log (and its rotated copy), oldest first."""
    found: list[dict[str, Any]] = []
    needle = f'"queue_id":"{queue_id.upper()}"'
    for path in (events_path + ".1", events_path):
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    if needle in line:
                        with contextlib.suppress(ValueError):
                            found.append(json.loads(line))
        except OSError:
            continue
    return found


def _show_history(args: argparse.Namespace) -> int:
    events = history(args.events_path, args.queue_id)
    if not events:
        print(f"mta: no message {args.queue_id} in the queue or the event log", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"queue_id": args.queue_id.upper(), "in_queue": False, "events": events}))
        return 0
    print(f"{args.queue_id.upper()} is no longer queued; its events:")
    for e in events:
        where = f" via {e['source']} to {e['mx']}" if e.get("mx") else ""
        reply = f": {e['text']}" if e.get("text") else ""
        print(f"  {e.get('time', '')} {e.get('event', '')} {e.get('recipient', '')}{where}{reply}")
    return 0


# ---------------------------------------------------------------------- changes
def _refusals(cfg: Config, cmd: str, queue_ids: list[str]) -> dict[str, str]:
    """Queue ids the command cannot act on, each with the reason: unknown, or in the wrong state."""
    try:
        store = SpoolStore(cfg.mta.spool_dir, readonly=True)
    except FileNotFoundError:
        return {q: "no such message in the queue" for q in queue_ids}
    try:
        states: dict[str, set[int]] = {}
        for qid, state in store.db.execute(
                "SELECT m.queue_id, r.state FROM messages m LEFT JOIN recipients r ON r.message = m.id"
                f" WHERE m.queue_id IN ({','.join('?' * len(queue_ids))})", [q.upper() for q in queue_ids]):
            states.setdefault(qid, set()).add(state)
    finally:
        store.close()
    out = {}
    for q in queue_ids:
        held = states.get(q.upper())
        if held is None:
            out[q] = "no such message in the queue"
        elif cmd == "retry" and held == {HELD}:
            out[q] = f"held: release it first (mta queue release {q})"
        elif cmd == "release" and HELD not in held:
            out[q] = "not held"
    return out


def _change(cfg: Config, cmd: str, queue_ids: list[str]) -> int:
    refused = _refusals(cfg, cmd, queue_ids) if queue_ids else {}
    for q, why in refused.items():
        print(f"mta: {q}: {why}", file=sys.stderr)
    queue_ids = [q for q in queue_ids if q not in refused]
    if refused and not queue_ids:
        return 1
    status = _apply(cfg, cmd, queue_ids)
    return 1 if refused else status


def _apply(cfg: Config, cmd: str, queue_ids: list[str]) -> int:
    try:
        reply = ask_running_daemon(cfg.mta.spool_dir, {"cmd": cmd, "queue_ids": queue_ids})
    except DaemonUnanswered as exc:
        print(f"mta: {exc}", file=sys.stderr)
        return 1
    if reply is not None:
        print(json.dumps(reply))
        return 0
    store = SpoolStore(cfg.mta.spool_dir)
    now = time.time()
    try:
        store.begin()
        result: Any
        if cmd == "flush":
            result = {"rescheduled": store.retry_all(now)}
        elif cmd == "retry":
            result = {"domains": store.retry_messages(queue_ids, now)}
        elif cmd == "release":
            result = {"domains": store.release_held(queue_ids, now)}
        elif cmd == "hold":
            result = {"held": store.hold(queue_ids)}
        else:
            result = {"deleted": [r[1] for r in store.delete_messages(queue_ids)]}
        store.commit()
    finally:
        store.rollback()
        store.close()
    print(json.dumps(result))
    return 0


def _iso(t: float | None) -> str:
    if not t:
        return ""
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
