"""Signed webhooks: events POSTed in batches to app endpoints, from a durable outbox on the spool's disk.

`config` (the `[[webhooks]]` table), `signing` (Standard Webhooks signatures, pure), `retry`
(back-off and expiry decisions, pure), `outbox` (the SQLite outbox and its writer thread),
`sender` (one task per endpoint that posts batches), `service` (wires them to the event log).
"""
