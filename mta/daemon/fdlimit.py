"""The open-file limit: both SMTP listeners may hold `max_connections` sockets each, and the
usual soft limit (1024) is below that. The soft limit is raised up to the hard limit (which an
unprivileged process may do; systemd's default hard limit is 524288), never lowered."""

from __future__ import annotations

import logging
import resource

log = logging.getLogger("mta")


def raise_open_files(wanted: int) -> int:
    """Raises RLIMIT_NOFILE's soft limit to at least `wanted` (capped by the hard limit); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-file limit from %d to %d: %s", soft, target, exc)
        if soft < wanted:
            log.warning("open-file limit %d is below the %d the listeners may need (raise LimitNOFILE=)",
                        soft, wanted)
    return soft
