"""When to try again: exponential backoff with jitter, bounded by the message's queue lifetime."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    base: float = 60.0          # delay after the first failed attempt
    factor: float = 2.0
    cap: float = 4 * 3600.0
    jitter: float = 0.2         # +/- this fraction, so retries of a burst spread out
    max_age: float = 5 * 86400.0

    def delay(self, attempts: int, rng: random.Random) -> float:
        """Delay after `attempts` failed attempts (1 = the first failure)."""
        exponent = max(0, attempts - 1)
        # Guard the power: after ~60 doublings the float overflows long before the cap matters.
        raw = self.cap if exponent > 60 else min(self.cap, self.base * self.factor ** exponent)
        return raw * (1.0 + rng.uniform(-self.jitter, self.jitter))

    def expires_at(self, created: float) -> float:
        return created + self.max_age

    def next_attempt(self, now: float, created: float, attempts: int, rng: random.Random,
                     not_before: float = 0.0) -> float:
        """The next attempt time, never later than the expiry time (so expiry is noticed then)."""
        t = max(now + self.delay(attempts, rng), not_before)
        return min(t, self.expires_at(created))

    def expired(self, now: float, created: float) -> bool:
        return now >= self.expires_at(created)
