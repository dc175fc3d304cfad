"""`mta api-key create|list|revoke`: keys of the HTTP API.

Works on `api.db` in the spool directory; a running daemon sees a new or revoked key at its next
request. Only a hash of each key is stored: `create` prints the key once, as its last line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime

from mta.config import Config
from mta.http.api.auth import KeyStore


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    s = sub.add_parser("api-key", help="keys of the HTTP API ([api] listen)")
    ss = s.add_subparsers(dest="apikey_cmd", required=True)
    p = ss.add_parser("create", help="make a key; it is printed once, as the last line")
    p.add_argument("--tenant", default="", help="the tenant whose mail, events and suppressions the key reaches")
    p.add_argument("--name", default="", help="a name to list and revoke it by (default: generated)")
    p.add_argument("--operator", action="store_true", help="an operator key: every tenant, global suppressions")
    p = ss.add_parser("list", help="list keys (never the keys themselves)")
    p.add_argument("--json", action="store_true")
    p = ss.add_parser("revoke", help="revoke a key by name or id")
    p.add_argument("key", metavar="NAME-OR-ID")


def run(cfg: Config, args: argparse.Namespace) -> int:
    store = KeyStore(cfg.mta.spool_dir)
    try:
        if args.apikey_cmd == "create":
            if not args.tenant and not args.operator:
                print("mta: api-key create: --tenant is required (or --operator for an operator key)",
                      file=sys.stderr)
                return 2
            try:
                record, key = store.create(args.name, args.tenant, args.operator, time.time())
            except ValueError as exc:
                print(f"mta: {exc}", file=sys.stderr)
                return 1
            kind = "operator key" if record.operator else f"key for tenant {record.tenant!r}"
            print(f"created {kind} {record.name!r} (id {record.id}); it is shown only now:")
            print(key)
            return 0
        if args.apikey_cmd == "list":
            keys = store.listing()
            if args.json:
                for k in keys:
                    print(json.dumps({"id": k.id, "name": k.name, "tenant": k.tenant, "operator": k.operator,
                                      "created": _iso(k.created)}))
                return 0
            print(f"{'ID':<10} {'NAME':<24} {'TENANT':<20} {'OPERATOR':<9} CREATED")
            for k in keys:
                print(f"{k.id:<10} {k.name:<24} {k.tenant:<20} {'yes' if k.operator else 'no':<9} {_iso(k.created)}")
            return 0
        if args.apikey_cmd == "revoke":
            if store.revoke(args.key) == 0:
                print(f"mta: no API key named or with id {args.key!r}", file=sys.stderr)
                return 1
            print(f"revoked {args.key}")
            return 0
        return 2
    finally:
        store.close()


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
