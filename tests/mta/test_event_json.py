"""The event log's JSON: times as datetime.isoformat writes them, every field of the event."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime

from hypothesis import strategies as st

from mta.events import Event, iso_time
from tests.support.fuzz import fuzz, fuzz_examples


def _isoformat(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@fuzz_examples(quick=500, fuzz=200_000)
def test_iso_time_is_what_isoformat_writes(max_examples: int, quick: bool) -> None:
    # Seconds are formatted once and cached; the fraction is rounded as datetime rounds it.
    times = st.floats(0, 4e9) | st.integers(0, 4 * 10**9).map(lambda s: s + 0.9999995) | st.integers(
        0, 4 * 10**15).map(lambda us: us / 1e6)
    @fuzz(max_examples, quick, times)
    def check(t: float) -> None:
        assert iso_time(t) == _isoformat(t), t


def test_to_json_carries_every_field() -> None:
    e = Event("delivered", "Q1", "r@example.com", "s@example.org", 1_795_500_000.1234, 1_795_499_999.5,
              code=250, status="2.0.0", text="250 ok \u00e9", machine=True)
    assert json.loads(e.to_json()) == {**dataclasses.asdict(e), "time": "2026-11-24T06:00:00.123Z",
                                       "queued_at": "2026-11-24T05:59:59.500Z"}
    assert json.loads(dataclasses.replace(e, queued_at=0.0).to_json())["queued_at"] == ""
