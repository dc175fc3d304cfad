"""Warm-up schedules and the warm-up calendar: daily volumes, day numbers and sending windows."""

from __future__ import annotations

import math
from dataclasses import dataclass

from policy.engine.settings import DAY, ScheduleSettings, WarmupSettings


@dataclass(frozen=True, slots=True)
class Schedule:
    """Daily volume by warm-up day; the last value holds once the schedule is done."""

    name: str
    days: tuple[int, ...]

    @classmethod
    def from_settings(cls, name: str, settings: ScheduleSettings) -> Schedule:
        return cls(name, tuple(settings.days))

    def volume(self, day: int) -> int:
        if not self.days:
            return 0
        return self.days[min(max(day, 0), len(self.days) - 1)]

    @property
    def last_day(self) -> int:
        return len(self.days) - 1


class Calendar:
    """Turns clock readings into warm-up day numbers and the sending window of each day.

    Window bounds are given on a 24-hour day and scale with `day_length`, so a test or demo with
    one-minute days keeps the same shape of day.
    """

    def __init__(self, w: WarmupSettings) -> None:
        self.day_length = float(w.day_length)
        scale = self.day_length / DAY
        self._offset = float(w.day_start) * scale
        self._win_start = float(w.window_start) * scale
        self._win_end = float(w.window_end) * scale
        self._burst_seconds = float(w.burst) * scale
        self._min_burst = w.min_burst

    def day_index(self, now: float) -> int:
        return math.floor((now - self._offset) / self.day_length)

    def day_begins(self, day_index: int) -> float:
        return day_index * self.day_length + self._offset

    @property
    def window_seconds(self) -> float:
        return self._win_end - self._win_start

    def in_window(self, now: float) -> bool:
        into = now - self.day_begins(self.day_index(now))
        return self._win_start <= into < self._win_end

    def next_window_start(self, now: float) -> float:
        """The start of the next sending window (now, if inside one)."""
        day = self.day_index(now)
        start = self.day_begins(day) + self._win_start
        if now < start:
            return start
        if now < self.day_begins(day) + self._win_end:
            return now
        return self.day_begins(day + 1) + self._win_start

    def window_left(self, now: float) -> float:
        """Seconds of today's sending window still ahead (all of it before it opens, 0 after it)."""
        begins = self.day_begins(self.day_index(now))
        return max(0.0, begins + self._win_end - max(now, begins + self._win_start))

    def burst_of_rate(self, rate: float) -> float:
        """Bucket size for a rate: a short stretch of it, never below the configured minimum."""
        return max(float(self._min_burst), rate * self._burst_seconds) if rate > 0 else 0.0

    def rate(self, daily_volume: float) -> float:
        """Tokens per second that spread `daily_volume` evenly over the sending window."""
        return daily_volume / self.window_seconds if self.window_seconds > 0 else 0.0

    def burst(self, daily_volume: float) -> float:
        """Bucket size: a short stretch of the rate, never below the configured minimum."""
        if daily_volume <= 0:
            return 0.0
        return max(float(self._min_burst), self.rate(daily_volume) * self._burst_seconds)
