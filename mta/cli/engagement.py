"""`mta engagement show ADDRESS`: what the engagement store knows about a recipient."""

from __future__ import annotations

import argparse
import json
import os
import time

from mta.config import Config
from mta.engagement.open import open_engagement_store
from mta.engagement.score import ENGAGED, INACTIVE, EngagementRules, send_rank

_CLASS = {ENGAGED: "engaged", INACTIVE: "inactive"}


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    e = sub.add_parser("engagement", help="per-recipient engagement (opens, clicks, score)")
    es = e.add_subparsers(dest="engagement_cmd", required=True)
    s = es.add_parser("show", help="an address's engagement record and send rank")
    s.add_argument("address")
    s.add_argument("--json", action="store_true")


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t)) if t else "never"


def run(cfg: Config, args: argparse.Namespace) -> int:
    path = cfg.engagement_path
    if not cfg.engagement.redis and not os.path.exists(path):
        print(f"mta: no engagement store at {path} (is [tracking] enabled?)")
        return 1
    e = cfg.engagement
    rules = EngagementRules(half_life=float(e.half_life), inactive_after=float(e.inactive_after))
    store = open_engagement_store(cfg)
    try:
        now = time.time()
        record = store.get(args.address, now)
    finally:
        store.close()
    if record is None:
        print(f"{args.address}: nothing recorded (ranks as unknown)")
        return 1
    rank = _CLASS.get(send_rank(record, now, rules)[0], "unknown")
    if args.json:
        print(json.dumps({"address": record.recipient, "score": round(record.score, 4), "rank": rank,
                          "opens": record.opens, "clicks": record.clicks, "last_open": record.last_open,
                          "last_click": record.last_click, "first_delivered": record.first_delivered,
                          "last_delivered": record.last_delivered}))
        return 0
    print(f"address          {record.recipient}\n"
          f"score            {record.score:.3f} ({rank})\n"
          f"opens / clicks   {record.opens} / {record.clicks} (human only)\n"
          f"last open        {_when(record.last_open)}\n"
          f"last click       {_when(record.last_click)}\n"
          f"first delivered  {_when(record.first_delivered)}\n"
          f"last delivered   {_when(record.last_delivered)}")
    return 0
