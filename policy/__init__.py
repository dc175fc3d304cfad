"""policyd: the warm-up policy daemon of warmup-mta.

- `policy.engine`: the pure core (ISPs, schedules, token buckets, health, rules, overrides).
- `policy.store`: one state interface; SQLite (default), Redis (shared, Lua) and memory backends.
- `policy.service`: the engine wired to a store and a clock (daemon, CLI and simulator use it).
- `policy.server`: the asyncio listener of the grant/feedback protocol, whose types, encoding and
  client (the MTA's side) live in `warmup_base.policy_protocol` (PROTOCOL.md).
- `policy.sim`: the warm-up simulator (the real service against modelled ISPs, a fake clock).
- `policy.config`, `policy.daemon`, `policy.cli`, `policy.metrics`: the shell.

It stands on `warmup_base` and `bounce_parser` and never imports `mta` (tests/test_layers.py).
"""
