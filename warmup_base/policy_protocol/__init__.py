"""The grant/feedback protocol between the MTA and policyd (PROTOCOL.md).

- `model`: the plain data both sides exchange (lease requests, leases, outcomes; their wire forms
  GrantRequest, Grant, Outcome) and the `Limiter` interface the MTA's queue asks for leases
- `wire`: sans-IO encoding and decoding of the JSON Lines messages
- `client`: the MTA's `Limiter` that speaks it to policyd over a socket
"""
