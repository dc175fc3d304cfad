"""The `mta` command: serve, check-config, queue, suppression, api-key, user, dkim, check-dns."""

from __future__ import annotations

import argparse
import getpass
import logging
import sys

from mta.config import ConfigError, load_config, require_serving_keys
from warmup_base import eventloop
from warmup_base.cliutil import quiet_broken_pipe, version_text
from warmup_base.configload import unwritable_dir
from warmup_base.gctune import tune_for_daemon

DEFAULT_CONFIG = "/etc/warmup-mta/mta.toml"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mta", description="warmup-mta: outbound MTA with IP/domain warm-up")
    p.add_argument("--version", action="version", version=version_text("mta"))
    p.add_argument("--config", default=DEFAULT_CONFIG, help=f"config file (default {DEFAULT_CONFIG})")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="run the MTA", description=(
        "Runs the MTA in the foreground: the submission and inbound (bounce/FBL) SMTP listeners, the "
        "durable queue and delivery, and the metrics and unsubscribe HTTP endpoints the config names. "
        "SIGTERM drains and exits 0; SIGHUP reopens the event log and reloads users and DKIM keys."))
    s.add_argument("--config", default=argparse.SUPPRESS)
    c = sub.add_parser("check-config", help="validate a config file")
    c.add_argument("--config", default=argparse.SUPPRESS)
    from mta.cli import apikey as apikeycli
    from mta.cli import checkdns as checkdns_cli
    from mta.cli import engagement as engagementcli
    from mta.cli import erase as erasecli
    from mta.cli import queue as queuecli
    from mta.cli import suppression as suppressioncli
    from mta.compliance.dkim import keygen

    queuecli.add_parser(sub)
    apikeycli.add_parser(sub)
    suppressioncli.add_parser(sub)
    keygen.add_parser(sub)
    checkdns_cli.add_parser(sub)
    engagementcli.add_parser(sub)
    erasecli.add_parser(sub)
    u = sub.add_parser("user", help="manage submission users")
    us = u.add_subparsers(dest="user_cmd", required=True)
    a = us.add_parser("add", help="add or replace a user in a users file (password read from stdin or prompt)")
    a.add_argument("--users-file", required=True)
    a.add_argument("name")
    a.add_argument("--tenant", default="")
    a.add_argument("--stream", default="")
    us.add_parser("hash", help="print a password hash for a users file (password from stdin or prompt)")
    # `mta queue stats --config X` must work with --config after the subcommand too.
    for action in sub.choices.values():
        _allow_config_anywhere(action)
    return p


def _allow_config_anywhere(parser: argparse.ArgumentParser) -> None:
    if not any("--config" in a.option_strings for a in parser._actions):
        parser.add_argument("--config", default=argparse.SUPPRESS)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _allow_config_anywhere(child)


def _read_password() -> str:
    if sys.stdin.isatty():
        return getpass.getpass("Password: ")
    return sys.stdin.readline().rstrip("\n")


@quiet_broken_pipe
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.cmd == "user":
        return _user(args)
    if args.cmd == "dkim":          # needs no config: it makes a key for one
        from mta.compliance.dkim import keygen

        return keygen.run(args)
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"mta: config error: {exc}", file=sys.stderr)
        return 2
    if args.cmd in ("check-config", "serve"):
        try:
            require_serving_keys(cfg)
        except ConfigError as exc:
            print(f"mta: config error: {exc}", file=sys.stderr)
            return 2
    if args.cmd == "check-config":
        problem = unwritable_dir(cfg.mta.spool_dir)
        if problem:
            print(f"mta: config error: mta.spool_dir: {cfg.mta.spool_dir}: {problem}", file=sys.stderr)
            return 2
        if [s.name for s in cfg.egress.sources] == ["default"] and not cfg.egress.sources[0].address:
            print("mta: warning: no [[egress.sources]]: the kernel picks the source address, and policyd warms "
                  "up one source named 'default'", file=sys.stderr)
        print(f"{cfg.path}: OK ({len(cfg.egress.sources)} egress sources, "
              f"{len(cfg.egress.pools)} pools, streams: {', '.join(sorted(cfg.streams))})")
        return 0
    if args.cmd == "queue":
        from mta.cli import queue as queuecli

        return queuecli.run(cfg, args)
    if args.cmd == "check-dns":
        from mta.cli import checkdns as checkdns_cli

        return checkdns_cli.run(args, cfg)
    if args.cmd == "suppression":
        from mta.cli import suppression as suppressioncli

        return suppressioncli.run(cfg, args)
    if args.cmd == "engagement":
        from mta.cli import engagement as engagementcli

        return engagementcli.run(cfg, args)
    if args.cmd == "erase":
        from mta.cli import erase as erasecli

        return erasecli.run(cfg, args)
    if args.cmd == "api-key":
        from mta.cli import apikey as apikeycli

        return apikeycli.run(cfg, args)
    if args.cmd == "serve":
        return _serve(cfg)
    return 2


def _serve(cfg) -> int:  # type: ignore[no-untyped-def]
    logging.basicConfig(level=getattr(logging, cfg.mta.log_level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    from mta.daemon.serve import MtaDaemon

    # The spool writer thread needs the GIL back between its SQLite statements; at the default
    # 5 ms switch interval a busy event loop makes every commit wait several of those, which is
    # the window in which a crash duplicates delivered mail.
    sys.setswitchinterval(0.0005)
    tune_for_daemon()
    try:
        return eventloop.run(MtaDaemon(cfg).run())
    except OSError as exc:
        logging.getLogger("mta").error("cannot start: %s", exc)
        return 1


def _user(args: argparse.Namespace) -> int:
    from mta.submission.auth import User, UsersFileError, format_user, hash_password, parse_users

    password = _read_password()
    if not password:
        print("mta: empty password", file=sys.stderr)
        return 2
    if args.user_cmd == "hash":
        print(hash_password(password))
        return 0
    try:
        with open(args.users_file, encoding="utf-8") as f:
            users = parse_users(f.read(), args.users_file)
    except FileNotFoundError:
        users = {}
    except UsersFileError as exc:
        print(f"mta: {exc}", file=sys.stderr)
        return 2
    users[args.name] = User(args.name, hash_password(password), args.tenant, args.stream)
    with open(args.users_file, "w", encoding="utf-8") as f:
        f.write("# warmup-mta users: name:scrypt$N$r$p$salt$hash[:tenant=...,stream=...]\n")
        for user in users.values():
            f.write(format_user(user) + "\n")
    print(f"user {args.name} written to {args.users_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
