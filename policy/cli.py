"""The `policyd` command: serve, status, pause, resume, set-day, history, explain, check-config, simulate.

Operator commands work on the state directly (the daemon need not run): they read the same
config, open the same store and record their action in the history, so an override survives
restarts and a running daemon sees it within `[policyd] cache_seconds`.

Selectors: --source NAME, --domain DOMAIN, --mailbox ADDRESS, --tenant NAME or --campaign TAG,
each optionally with --isp NAME; --isp alone means the ISP as a whole. Pausing a source or domain
without --isp pauses it on every ISP; resume without --isp also ends its per-ISP pauses and
back-offs; set-day without --isp sets the day on every configured ISP. `explain` says why a
pair's limit is what it is now, with the actions and evidence that led there.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Sequence

from policy import operations
from policy.config import Config, load_config
from policy.engine import Policy
from policy.engine.state import FOREVER
from policy.operations import Selector
from policy.service import PairStatus, PolicyService, selector_key
from policy.store import StoreError, open_store
from warmup_base import eventloop
from warmup_base.cliutil import quiet_broken_pipe, version_text
from warmup_base.configload import ConfigError, unwritable_dir
from warmup_base.gctune import tune_for_daemon


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="policyd", description="Warm-up policy daemon for warmup-mta")
    p.add_argument("--version", action="version", version=version_text("policyd"))
    sub = p.add_subparsers(dest="command", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help_text, description=help_text)
        c.add_argument("--config", required=True, metavar="FILE", help="policy.toml")
        return c

    def selectors(c: argparse.ArgumentParser) -> None:
        c.add_argument("--source", default="", help="source name (the MTA's [[egress.sources]] name)")
        c.add_argument("--domain", default="", help="sending domain")
        c.add_argument("--mailbox", default="", help="sender mailbox (outreach schedules)")
        c.add_argument("--isp", default="", help="ISP name (alone: the ISP as a whole)")
        c.add_argument("--tenant", default="", help="tenant (a culprit: pauses only)")
        c.add_argument("--campaign", default="", help="campaign tag (a culprit: pauses only)")

    command("serve", "run the policy daemon")
    command("check-config", "validate the config; exit 2 naming the bad key")
    c = command("status", "warm-up day, limits, tokens, health and pauses per pair")
    c.add_argument("--json", action="store_true", help="one JSON document instead of a table")
    selectors(c)
    c = command("pause", "pause sending for a source, domain, mailbox or ISP")
    selectors(c)
    c.add_argument("--force", action="store_true", help="even for a name policyd has never heard of")
    c.add_argument("--for", dest="duration", default="", help="e.g. 2h; default: until resumed")
    c.add_argument("--reason", default="")
    c = command("resume", "end pauses and back-offs (automatic ones too)")
    selectors(c)
    c.add_argument("--reason", default="")
    c = command("set-day", "set the warm-up day")
    selectors(c)
    c.add_argument("--force", action="store_true", help="even for a name policyd has never heard of")
    c.add_argument("day", type=int)
    c.add_argument("--reason", default="")
    c = command("history", "recorded actions, oldest first")
    selectors(c)
    c.add_argument("--limit", type=int, default=50)
    c.add_argument("--json", action="store_true", help="JSON Lines instead of text")
    c = command("explain", "why a source's, domain's, mailbox's or ISP's limit is what it is now")
    selectors(c)
    c.add_argument("--history", type=int, default=10, help="actions shown per pair")
    c.add_argument("--json", action="store_true", help="one JSON document instead of text")
    c = command("simulate", "play a warm-up scenario against this config with a simulated clock")
    c.add_argument("--scenario", required=True, metavar="FILE", help="scenario TOML (see conf/scenarios/)")
    c.add_argument("--days", type=int, default=0, help="simulated days (default: the scenario's)")
    c.add_argument("--out", default="", metavar="DIR",
                   help="write daily.csv, actions.csv, summary.json, summary.txt and chart.png here")
    c.add_argument("--json", default="", metavar="FILE", help="write the summary as one JSON object")
    c.add_argument("--quiet", action="store_true", help="no summary on stdout")
    return p


@quiet_broken_pipe
def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            from policy.daemon import serve
            tune_for_daemon()
            return eventloop.run(serve(args.config))
        if args.command == "simulate":
            from policy.sim.command import simulate  # here: the other commands never load the simulator
            return simulate(args)
        cfg = load_config(args.config)
        if args.command == "check-config":
            if cfg.policyd.state.startswith("sqlite://"):
                state_dir = os.path.dirname(cfg.policyd.state[len("sqlite://"):])
                problem = unwritable_dir(state_dir)
                if problem:
                    raise ConfigError(f"policyd.state: {state_dir}: {problem}")
            if not cfg.policy.schedules:
                print("policyd: warning: no warm-up schedule is configured: policyd will only shape connections "
                      "(conf/policy.toml has working defaults)", file=sys.stderr)
            print(f"{args.config}: OK ({len(cfg.policy.isps)} ISPs, {len(cfg.policy.schedules)} schedules, "
                  f"state {cfg.policyd.state})")
            return 0
        return asyncio.run(_operate(cfg, args))
    except ConfigError as exc:
        print(f"policyd: config error: {exc}", file=sys.stderr)
        return 2
    except (StoreError, ValueError) as exc:
        print(f"policyd: {exc}", file=sys.stderr)
        return 1


def _selector(args: argparse.Namespace) -> Selector:
    return Selector(args.source, args.domain, args.mailbox, args.isp, args.tenant, args.campaign)


async def _operate(cfg: Config, args: argparse.Namespace) -> int:
    store = open_store(cfg.policyd.state, cfg.base_dir, cfg.policyd.state_prefix, cfg.policyd.history_limit)
    service = PolicyService(Policy(cfg.policy), store, time.time, cache_seconds=0.0)
    try:
        if args.command == "status":
            return await _status(service, args)
        if args.command == "history":
            return await _history(service, args)
        if args.command == "explain":
            return await _explain(service, args)
        command = args.command.replace("-", "_")
        try:
            keys = await operations.apply(service, command, _selector(args), duration=getattr(args, "duration", ""),
                                          day=getattr(args, "day", 0), reason=args.reason,
                                          force=getattr(args, "force", False))
        except operations.OperationError as exc:
            if exc.unknown:
                names = ", ".join(f"--{flag} {value}" for flag, value in exc.unknown)
                print(f"policyd: unknown {names}: not configured and never seen in traffic (a typo?); "
                      "--force to act anyway", file=sys.stderr)
            else:
                print(f"policyd: {exc}", file=sys.stderr)
            return 1
        for key in keys:
            print(f"{args.command}: {key}")
        return 0
    finally:
        await store.close()


async def _status(service: PolicyService, args: argparse.Namespace) -> int:
    if args.json:
        print(json.dumps(await operations.status(service, _selector(args)), indent=2))
        return 0
    selector = _selector(args)
    rows = [r for r in await service.status() if selector.matches(r)]
    now = service.clock()
    header = ("KIND", "NAME", "ISP", "SCHEDULE", "DAY", "VOLUME", "LIMIT", "FACTOR", "TOKENS", "USED",
              "DELIV", "THROT", "BLOCK", "HARD", "COMPL", "AUTH", "NEXT", "STATE")
    table = [header]
    for r in rows:
        h = r.health
        table.append((r.key.kind, r.key.name, r.key.isp, r.schedule or "-", str(r.state.day), str(r.volume),
                      f"{r.limit:.0f}", f"{r.factor:.2f}", "-" if r.tokens is None else f"{r.tokens:.1f}",
                      f"{r.used_today:.0f}", str(h["delivered"]), str(h["throttled"]), str(h["blocked"]),
                      str(h["hard_bounce"]), str(h["complaint"]), str(h["auth"]), _next_text(r.next_at, now),
                      _state_text(r, now)))
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    if len(table) == 1:
        print("(no pairs: configure [[sources]] or [[domains]], or send some mail)")
    return 0


def _next_text(at: float | None, now: float) -> str:
    """When the pair's next message may go: now, a time today, or a date."""
    if at is None:
        return "-"
    if at <= now + 1:
        return "now"
    if at >= FOREVER:
        return "resume"
    return time.strftime("%H:%M:%S" if at - now < 86400 else "%m-%d %H:%M", time.localtime(at))


def _when(t: float) -> str:
    return "until resumed" if t >= FOREVER else time.strftime("until %Y-%m-%d %H:%M:%S", time.localtime(t))


def _state_text(r: PairStatus, now: float) -> str:
    s = r.state
    if s.operator_paused:
        return "paused by operator"
    if r.paused_until and now < s.paused_until:
        return f"paused ({s.pause_rule}) {_when(s.paused_until)}"
    if now < s.backoff_until:
        return f"backing off {_when(s.backoff_until)}"
    if now < s.hold_until:
        return f"held {_when(s.hold_until)}"
    return "ok"


async def _history(service: PolicyService, args: argparse.Namespace) -> int:
    for a in await operations.history(service, _selector(args), args.limit):
        if args.json:
            print(json.dumps(a))
        else:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(a["at"]))
            reply = f" [reply: {a['reply']}]" if a["reply"] else ""
            print(f"{when}  {a['key']}  {a['rule']}/{a['action']}: {a['reason']}{reply}")
    return 0


async def _explain(service: PolicyService, args: argparse.Namespace) -> int:
    key = selector_key(args.source, args.domain, args.mailbox, args.isp, args.tenant, args.campaign)
    pairs = await service.explain(key, args.history)
    if args.json:
        print(json.dumps({"time": service.clock(), "selector": str(key), "pairs": pairs}, indent=2))
        return 0
    for p in pairs:
        state = f"paused ({p['pause_rule']})" if p["paused"] else "sending"
        limit = "" if p["volume"] is None else f", {p['volume']:,.0f} a day, {p['rate_per_minute']:.2f}/min now"
        print(f"{p['key']}: {state}{limit}")
        for line in p["why"]:
            print(f"  {line}")
        for a in p["actions"]:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(a["at"]))
            reply = f" [reply: {a['reply']}]" if a["reply"] else ""
            print(f"  {when}  {a['rule']}/{a['action']}: {a['reason']}{reply}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
