"""The base layer of warmup-mta: what `mta` and `policy` both stand on, and nothing else.

It imports no other package of the project (bounce_parser, policy, mta sit above it):

- `configload`: TOML tables into typed dataclasses, units (durations, sizes), errors naming the key
- `listen`: "host:port" and "unix:/path" listen/connect addresses
- `sdnotify`: systemd's notify protocol; `cliutil`: what every command line shares
- `metrics_http`: the /metrics responder both daemons serve (Prometheus text 0.0.4)
- `retry`: the MTA's retry rule (exponential backoff with jitter, queue lifetime)
- `policy_protocol`: the grant/feedback protocol between the MTA and policyd: its types (`model`),
  its encoding (`wire`, described in PROTOCOL.md) and the MTA's client that speaks it (`client`)
"""
