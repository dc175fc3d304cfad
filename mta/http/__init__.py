"""The MTA's HTTP endpoints, each a small asyncio server: `unsubscribe` (RFC 8058 one-click).
The API, the operator console and open/click tracking live here too."""
