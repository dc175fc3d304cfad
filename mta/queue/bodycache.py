"""Message bodies of jobs in memory, so a freshly accepted message is sent without reading it back.

Entries are reference-counted by the jobs that need them and dropped when the last one is done;
the total size is bounded, and what does not fit is simply read from the spool when needed.
A body put here can be marked as going on the wire as it is (mta.wireform.goes_as_is); one read
back from the spool never is, so it is checked and stuffed as before.
"""

from __future__ import annotations


class BodyCache:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._refs: dict[int, int] = {}
        self._bodies: dict[int, bytes] = {}
        self._as_is: set[int] = set()

    def put(self, message_id: int, body: bytes, refs: int, as_is: bool = False) -> None:
        self._refs[message_id] = self._refs.get(message_id, 0) + refs
        if self.fill(message_id, body) and as_is:
            self._as_is.add(message_id)

    def add_ref(self, message_id: int) -> None:
        self._refs[message_id] = self._refs.get(message_id, 0) + 1

    def fill(self, message_id: int, body: bytes) -> bool:
        """Keeps `body` if a job still needs it and it fits; True if it was added."""
        if message_id in self._bodies or message_id not in self._refs:
            return False
        if self.size + len(body) > self.max_bytes:
            return False
        self._bodies[message_id] = body
        self.size += len(body)
        return True

    def get(self, message_id: int) -> bytes | None:
        return self._bodies.get(message_id)

    def as_is(self, message_id: int) -> bool:
        """The body held for `message_id` needs no dot-stuffing or line-end repair."""
        return message_id in self._as_is

    def release(self, message_id: int) -> None:
        left = self._refs.get(message_id, 0) - 1
        if left > 0:
            self._refs[message_id] = left
            return
        self._refs.pop(message_id, None)
        body = self._bodies.pop(message_id, None)
        if body is not None:
            self.size -= len(body)
            self._as_is.discard(message_id)
