"""policyd: the warm-up policy daemon of warmup-mta.

- `policy.engine`: the pure core (ISPs, schedules, token buckets, health, rules, overrides).
- `policy.store`: one state interface; SQLite (default), Redis (shared, Lua) and memory backends.
- `policy.service`: the engine wired to a store and a clock (daemon, CLI and simulator use it).
- `policy.protocol`, `policy.server`, `policy.client`: the grant/feedback wire protocol
  (PROTOCOL.md), its asyncio listener, and the MTA's `Limiter` that speaks it.
- `policy.config`, `policy.daemon`, `policy.cli`, `policy.metrics` (and `mta.sdnotify`): the shell.
"""
