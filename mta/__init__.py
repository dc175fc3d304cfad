"""The MTA: accepts mail from apps, keeps it durably, and delivers it within the leases it gets.

It stands on `warmup_base` and `bounce_parser` and never imports `policy` (tests/test_layers.py).
Inside, the shells sit on top and nothing imports them; below them, one room per job:

- `cli/`: the `mta` command; `daemon/`: `mta serve` (wires the rooms; control socket)
- `submission/`: SMTP from apps: protocol, auth, envelope checks, headers, into the spool
- `spool/`: the durable queue (the single source of truth), queue ids, the suppression list,
  the on-disk queue gauges
- `queue/`: scheduling (memory window over the disk backlog, per-site lanes), leases from a
  `Limiter` (static limits here, policyd through warmup_base), outcomes, DSNs, suppression check
- `delivery/`: MX routing, outbound SMTP sessions, what a reply means
- `inbound/`: the listener for bounces and complaints, VERP return paths, what reports become
- `compliance/`: what providers require of a sender: DKIM, one-click unsubscribe, SPF, check-dns
- `http/`: HTTP endpoints (one-click unsubscribe; the API, console and tracking go here)

The ground floor every room reads: `config` (the typed config), `model` (plain data between
rooms), `events` (the one event type and its log), `metrics` (the Prometheus registry).
"""
