"""Queue ids: 18 upper-case hex digits, sortable by time, unique across processes.

13 digits of microseconds since the epoch, 2 digits of a per-process random salt, 3 digits of a
counter. Sorting by id sorts by acceptance time, which operators expect from `mta queue list`.
"""

from __future__ import annotations

import itertools
import os
import time

_SALT = int.from_bytes(os.urandom(1), "big")
_COUNTER = itertools.count(int.from_bytes(os.urandom(2), "big"))


def new_queue_id() -> str:
    micros = time.time_ns() // 1000
    return f"{micros & 0xFFFFFFFFFFFFF:013X}{_SALT:02X}{next(_COUNTER) & 0xFFF:03X}"
