"""`mta erase ADDRESS`: the right to erasure (GDPR art. 17). Through the running daemon (its
control socket) when one runs, as it owns the live event log and the in-memory queue; else
straight on the files. See mta.erasure.service for what is removed and what stays."""

from __future__ import annotations

import argparse
import json
import sys

from mta.config import Config
from mta.daemon.control import DaemonUnanswered, ask_running_daemon
from mta.erasure.service import ErasureReport, erase_offline


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    e = sub.add_parser("erase", help="erase an address: engagement, events, queued mail, delivery log "
                                     "(a suppression stays, hashed)")
    e.add_argument("address")
    e.add_argument("--json", action="store_true", help="print the report as JSON")


def _report_from(data: dict) -> ErasureReport:
    return ErasureReport(data["address"], dict(data["removed"]), int(data["suppressions_hashed"]),
                         int(data["in_flight"]), list(data["wal_kept"]), list(data["skipped"]))


def run(cfg: Config, args: argparse.Namespace) -> int:
    address = args.address.strip()
    if "@" not in address:
        print(f"mta: not an address: {args.address!r}", file=sys.stderr)
        return 2
    try:
        reply = ask_running_daemon(cfg.mta.spool_dir, {"cmd": "erase", "address": address}, timeout=600)
    except DaemonUnanswered as exc:
        print(f"mta: {exc}", file=sys.stderr)
        return 1
    if reply is not None:
        report = _report_from(reply["report"])
    else:
        try:
            report = erase_offline(cfg, address)
        except ValueError as exc:
            print(f"mta: {exc}", file=sys.stderr)
            return 2
    print(json.dumps(report.to_json()) if args.json else report.text())
    return 0
