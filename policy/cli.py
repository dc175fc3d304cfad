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

from policy.config import Config, load_config
from policy.engine import Policy
from policy.engine.state import ANY_ISP, FOREVER, MAILBOX, SENDER, PairKey
from policy.service import PairStatus, PolicyService, selector_key
from policy.store import StoreError, open_store
from warmup_base.cliutil import quiet_broken_pipe, version_text
from warmup_base.configload import ConfigError, parse_duration, unwritable_dir


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
            return asyncio.run(serve(args.config))
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
        if args.command in ("pause", "set-day") and not args.force:
            unknown = await _unknown_names(service, args)
            if unknown:
                print(f"policyd: unknown {', '.join(unknown)}: not configured and never seen in traffic (a typo?); "
                      "--force to act anyway", file=sys.stderr)
                return 1
        keys = await _targets(service, args)
        for key in keys:
            if args.command == "pause":
                duration = parse_duration(args.duration, "--for") if args.duration else 0.0
                await service.pause(key, duration, args.reason)
            elif args.command == "resume":
                await service.resume(key, args.reason)
            else:
                await service.set_day(key, args.day, args.reason)
            print(f"{args.command}: {key}")
        return 0
    finally:
        await store.close()


async def _targets(service: PolicyService, args: argparse.Namespace) -> list[PairKey]:
    """The pairs a command changes.

    A warm-up day belongs to (sender, ISP) pairs, so set-day without --isp sets it on every ISP.
    Pause without --isp pauses the sender on every ISP at once (its all-ISPs pair); resume without
    --isp ends that pause and every per-ISP pause and back-off of the sender too.
    """
    key = selector_key(args.source, args.domain, args.mailbox, args.isp, args.tenant, args.campaign)
    if args.command == "set-day" and key.kind not in ("ip", "domain", "mailbox"):
        raise ValueError("set-day needs --source, --domain or --mailbox")
    if key.kind in ("tenant", "campaign") and key.isp == ANY_ISP and args.command != "pause":
        seen = [k for k in await service.known_pairs() if (k.kind, k.name) == (key.kind, key.name)]
        return [key, *seen]
    if key.isp != ANY_ISP or key.kind not in ("ip", "domain") or args.command == "pause":
        return [key]
    isps = [n for n in service.policy.catalog.names if service.policy.catalog.settings(n).warmup]
    seen = [k.isp for k in await service.known_pairs() if (k.kind, k.name) == (key.kind, key.name)]
    per_isp = [PairKey(key.kind, key.name, isp) for isp in dict.fromkeys([*isps, *seen]) if isp != ANY_ISP]
    return per_isp if args.command == "set-day" else [key, *per_isp]


async def _unknown_names(service: PolicyService, args: argparse.Namespace) -> list[str]:
    """Selector values that match nothing configured and nothing seen: `--isp gmial` must not
    silently pause nothing."""
    known = await service.known_pairs()
    seen = {(k.kind, k.name) for k in known} | {("isp", k.isp) for k in known}
    seen |= {("isp", name) for name in service.policy.catalog.names}
    wanted = [("ip", "--source", args.source), ("domain", "--domain", args.domain.lower()),
              ("mailbox", "--mailbox", args.mailbox.lower()), ("isp", "--isp", args.isp)]
    return [f"{flag} {value}" for kind, flag, value in wanted if value and (kind, value) not in seen]


def _matches(row: PairStatus, args: argparse.Namespace) -> bool:
    k = row.key
    return ((not args.source or (k.kind, k.name) == ("ip", args.source))
            and (not args.domain or (k.kind, k.name) == ("domain", args.domain.lower()))
            and (not args.mailbox or (k.kind, k.name) == ("mailbox", args.mailbox.lower()))
            and (not args.isp or k.isp == args.isp or (k.kind, k.name) == ("isp", args.isp)))


async def _status(service: PolicyService, args: argparse.Namespace) -> int:
    rows = [r for r in await service.status() if _matches(r, args)]
    now = service.clock()
    if args.json:
        day = service.policy.calendar.day_index(now)
        print(json.dumps({"time": now, "calendar_day": day, "in_window": service.policy.calendar.in_window(now),
                          "pairs": [r.to_dict() for r in rows]}, indent=2))
        return 0
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
    prefixes = [""]
    if args.source or args.domain or args.mailbox or args.isp or args.tenant or args.campaign:
        key = selector_key(args.source, args.domain, args.mailbox, args.isp, args.tenant, args.campaign)
        isp = "" if key.isp == ANY_ISP else key.isp
        prefixes = [f"{key.kind}|{key.name}|{isp}"]
        if key.kind == MAILBOX:          # a sender mailbox is also judged as a culprit of its pairs
            prefixes.append(f"{SENDER}|{key.name}|{isp}")
    actions = [a for prefix in prefixes for a in await service.history(prefix, args.limit)]
    if len(prefixes) > 1:                # one list, oldest first, as long as asked
        actions.sort(key=lambda a: a.at)
        actions = actions[-args.limit:] if args.limit > 0 else actions
    for a in actions:
        if args.json:
            print(json.dumps(a.to_dict()))
        else:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(a.at))
            reply = f" [reply: {a.reply}]" if a.reply else ""
            print(f"{when}  {a.key}  {a.rule}/{a.action}: {a.reason}{reply}")
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
