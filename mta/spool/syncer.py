"""The delivery journal's syncer: a small process that fdatasyncs the journal's files, so that the
event loop never waits for the disk.

An attempt note must be durable before the message goes (mta.spool.journal). Synced by the event
loop itself, the fdatasyncs blocked it for about a sixth of its time under load: replies sat
unread meanwhile (the window in which a crash duplicates a message) and every session waited.
A thread would not do: it needs the interpreter lock to wake and to report, and under load it
waits milliseconds for it. This process has its own. fdatasync makes a file's written data
durable whichever descriptor wrote it, so it opens the files by name.

Protocol over a socket pair (its standard input): the daemon writes one byte per request, the
index of the file to sync; the process answers each request with the same byte once that file
is synced. It exits when the daemon's end closes (the daemon stopped or was killed).

    python -m mta.spool.syncer PATH [PATH ...]
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys


def serve(channel: int, paths: list[str]) -> None:
    fds = [os.open(path, os.O_RDWR) for path in paths]
    while True:
        try:
            requests = os.read(channel, 256)
        except InterruptedError:
            continue
        if not requests:
            return
        # Requests that queued up meanwhile are served by one sync of each file they name.
        for index in sorted(set(requests)):
            os.fdatasync(fds[index])
        os.write(channel, requests)


def main() -> None:
    # A stop signal to the whole service (systemd signals every process of the unit) is the
    # daemon's to act on: this process serves until the daemon's end of the channel closes.
    for stop in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(stop, signal.SIG_IGN)
    # On an error the daemon notices the closed channel and syncs in its own loop again.
    with contextlib.suppress(OSError):
        serve(0, sys.argv[1:])


if __name__ == "__main__":
    main()
