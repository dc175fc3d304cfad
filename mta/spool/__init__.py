"""The durable queue (`store`, written by one thread in `writer`), queue ids (`ids`), the
suppression list kept in the same database (`suppression`), gauges of the queue on disk (`gauges`)."""

from mta.spool.store import SpoolStore
from mta.spool.writer import Spool, SpoolClosed

__all__ = ["Spool", "SpoolClosed", "SpoolStore"]
