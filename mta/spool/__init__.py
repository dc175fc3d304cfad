"""The durable queue."""

from mta.spool.store import SpoolStore
from mta.spool.writer import Spool, SpoolClosed

__all__ = ["Spool", "SpoolClosed", "SpoolStore"]
