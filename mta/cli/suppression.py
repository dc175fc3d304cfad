"""`mta suppression add|remove|list|import|export`.

Works on the spool database directly (SQLite serialises writers); a running daemon picks new
entries up within seconds, so no restart or reload is needed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from mta.config import Config
from mta.spool.store import SpoolStore
from mta.spool.suppression import REASONS, Suppression, add, export_csv, listing, parse_csv, remove
from warmup_base.configload import ConfigError, parse_duration


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    s = sub.add_parser("suppression", help="addresses not to send to (per tenant or global)")
    ss = s.add_subparsers(dest="suppression_cmd", required=True)
    p = ss.add_parser("add", help="suppress addresses")
    p.add_argument("addresses", nargs="+")
    p.add_argument("--tenant", default="", help="only for this tenant (default: everyone)")
    p.add_argument("--reason", default="manual", choices=REASONS)
    p.add_argument("--ttl", default="", help="expire after this long, e.g. 7d (default: never)")
    p.add_argument("--detail", default="")
    p = ss.add_parser("remove", help="lift suppressions")
    p.add_argument("addresses", nargs="+")
    p.add_argument("--tenant", default=None, help="only this tenant's entry (default: every entry)")
    p = ss.add_parser("list", help="list suppressions")
    p.add_argument("--tenant", default=None)
    p.add_argument("--reason", default=None, choices=REASONS)
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p = ss.add_parser("import", help="add the addresses of a CSV file (column 'address'; or one per line)")
    p.add_argument("file", help="CSV file, or - for stdin")
    p.add_argument("--tenant", default="")
    p.add_argument("--reason", default="manual", choices=REASONS)
    p = ss.add_parser("export", help="write all suppressions as CSV")
    p.add_argument("--tenant", default=None)
    p.add_argument("--out", default="-", help="file, or - for stdout")


def run(cfg: Config, args: argparse.Namespace) -> int:
    cmd = args.suppression_cmd
    now = time.time()
    store = SpoolStore(cfg.mta.spool_dir)
    try:
        if cmd == "list":
            entries = listing(store.db, args.tenant, args.reason, args.limit)
            for e in entries:
                if args.json:
                    print(json.dumps({"address": e.address, "tenant": e.tenant, "reason": e.reason,
                                      "created": e.created, "expires": e.expires, "source": e.source,
                                      "detail": e.detail}))
                else:
                    until = time.strftime("%Y-%m-%d %H:%M", time.gmtime(e.expires)) if e.expires else "never"
                    print(f"{e.address:40} {e.tenant or '(all)':12} {e.reason:12} until {until}  {e.detail[:40]}")
            return 0
        if cmd == "export":
            text = export_csv(listing(store.db, args.tenant))
            if args.out == "-":
                sys.stdout.write(text)
            else:
                with open(args.out, "w", encoding="utf-8") as f:
                    f.write(text)
            return 0
        store.begin()
        if cmd == "add":
            expires = 0.0
            if args.ttl:
                try:
                    expires = now + parse_duration(args.ttl, "--ttl")
                except ConfigError as exc:
                    print(f"mta: {exc}", file=sys.stderr)
                    return 2
            for address in args.addresses:
                if "@" not in address:
                    print(f"mta: not an address: {address}", file=sys.stderr)
                    return 2
                add(store.db, Suppression(args.tenant, address, args.reason, now, expires, "cli", args.detail))
            print(f"suppressed {len(args.addresses)} address(es)")
        elif cmd == "remove":
            n = sum(remove(store.db, a, args.tenant) for a in args.addresses)
            print(f"removed {n} entr{'y' if n == 1 else 'ies'}")
        elif cmd == "import":
            if args.file == "-":
                text = sys.stdin.read()
            else:
                with open(args.file, encoding="utf-8") as f:
                    text = f.read()
            try:
                entries = parse_csv(text, args.reason, args.tenant, now)
            except ValueError as exc:
                print(f"mta: {args.file}: {exc}", file=sys.stderr)
                return 2
            for e in entries:
                add(store.db, e)
            print(f"imported {len(entries)} address(es)")
        store.commit()
        return 0
    finally:
        store.rollback()
        store.close()
