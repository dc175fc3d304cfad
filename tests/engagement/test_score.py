"""Engagement scores decay, and capped mail goes to the engaged first, unknown next, inactive last."""

from __future__ import annotations

import pytest

from mta.engagement.score import (
    DAY,
    ENGAGED,
    INACTIVE,
    UNKNOWN,
    EngagementRecord,
    EngagementRules,
    anchored,
    current_score,
    from_anchored,
    note_activity,
    note_delivery,
    send_rank,
)

NOW = 1_800_000_000.0


def test_score_halves_every_half_life() -> None:
    r = note_activity(EngagementRecord("a@b.test"), "opened", NOW)
    assert current_score(r, NOW) == pytest.approx(1.0)
    assert current_score(r, NOW + 30 * DAY) == pytest.approx(0.5)
    clicked = note_activity(r, "clicked", NOW)
    assert current_score(clicked, NOW) == pytest.approx(4.0) and clicked.clicks == 1 and clicked.opens == 1


def test_anchored_sums_equal_the_step_by_step_score() -> None:
    rules = EngagementRules()
    events = [("opened", NOW), ("clicked", NOW + 3 * DAY), ("opened", NOW + 40 * DAY)]
    record = EngagementRecord("a@b.test")
    total = 0.0
    for kind, at in events:
        record = note_activity(record, kind, at, rules)
        total += anchored(3.0 if kind == "clicked" else 1.0, at, rules)
    later = NOW + 100 * DAY
    assert from_anchored(total, later, rules) == pytest.approx(current_score(record, later, rules))


def test_anchored_values_stay_finite_for_decades() -> None:
    rules = EngagementRules(half_life=7 * DAY)
    assert anchored(3.0, NOW + 15 * 365 * DAY, rules) < float("inf")


def test_send_order_engaged_then_unknown_then_inactive() -> None:
    keen = note_activity(note_delivery(EngagementRecord("keen@x"), NOW - 10 * DAY), "clicked", NOW - DAY)
    mild = note_activity(note_delivery(EngagementRecord("mild@x"), NOW - 10 * DAY), "opened", NOW - 2 * DAY)
    new = note_delivery(EngagementRecord("new@x"), NOW - 5 * DAY)          # mailed lately, not yet engaged
    dead = note_delivery(EngagementRecord("dead@x"), NOW - 400 * DAY)
    stale = note_activity(note_delivery(EngagementRecord("stale@x"), NOW - 900 * DAY), "opened", NOW - 800 * DAY)
    ranks = {r.recipient: send_rank(r, NOW) for r in (keen, mild, new, dead, stale)}
    ranks["never@x"] = send_rank(None, NOW)
    order = sorted(ranks, key=ranks.__getitem__)
    assert order[:2] == ["keen@x", "mild@x"]
    assert {ranks["new@x"][0], ranks["never@x"][0]} == {UNKNOWN}
    assert ranks["dead@x"][0] == INACTIVE and ranks["stale@x"][0] == INACTIVE
    assert ranks["keen@x"][0] == ENGAGED
