"""The private HTTP API (`[api] listen`): message injection on the same pipeline as SMTP
submission, message status, the event feed, suppressions and the OpenAPI document.

Modules: app (server and routes), auth (API keys), request (JSON -> typed request), compose
(typed request -> RFC 5322 bytes), templates (sandboxed Jinja2), idempotency, eventindex (event
history and cursor), status (recipient state from events), errors, openapi."""
