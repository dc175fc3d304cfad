"""The audience: seeded, with the configured mix and shares, and the planner's order."""

from __future__ import annotations

import random
from collections import Counter

from policy.sim.audience import ActiveUserSampler, Audience
from policy.sim.scenario import AudienceSettings

NAMES = ["google", "yahoo", "microsoft", "other"]


def make(seed: int = 1, **changes: object) -> Audience:
    settings = AudienceSettings(size=20000, **changes)   # type: ignore[arg-type]
    return Audience.generate(settings, NAMES, random.Random(seed))


def test_the_same_seed_gives_the_same_people_and_another_seed_others() -> None:
    a, b, c = make(5), make(5), make(6)
    assert (a.isp, a.engagement, a.invalid, a.complainer) == (b.isp, b.engagement, b.invalid, b.complainer)
    assert a.engagement != c.engagement


def test_mix_and_shares_follow_the_settings() -> None:
    aud = make(isp_mix={"google": 0.5, "yahoo": 0.1, "microsoft": 0.4}, invalid_share=0.05,
               complainer_share=0.01, engagement_mean=0.4, inactive_share=0.0)
    counts = Counter(NAMES[i] for i in aud.isp)
    assert abs(counts["google"] / len(aud) - 0.5) < 0.02 and counts["other"] == 0
    assert abs(sum(aud.invalid) / len(aud) - 0.05) < 0.006
    assert abs(sum(aud.complainer) / len(aud) - 0.01) < 0.004
    valid = [e for e, bad in zip(aud.engagement, aud.invalid, strict=True) if not bad]
    assert abs(sum(valid) / len(valid) - 0.4) < 0.02


def test_invalid_addresses_never_engaged_and_complainers_are_rarely_engaged() -> None:
    aud = make(complainer_share=0.05)
    assert all(aud.engagement[i] == 0.0 for i in range(len(aud)) if aud.invalid[i])
    assert not any(aud.complainer[i] and aud.invalid[i] for i in range(len(aud)))
    complainers = [aud.engagement[i] for i in range(len(aud)) if aud.complainer[i]]
    others = [aud.engagement[i] for i in range(len(aud)) if not aud.complainer[i] and not aud.invalid[i]]
    assert sum(complainers) / len(complainers) < sum(others) / len(others)


def test_the_planner_mails_the_most_engaged_first_and_skips_the_suppressed() -> None:
    aud = make()
    order = aud.planned_order()
    scores = [aud.engagement[i] for i in order]
    assert scores == sorted(scores, reverse=True)
    first = order[0]
    aud.suppressed[first] = True
    assert first not in aud.planned_order() and len(aud.planned_order()) == len(order) - 1
    assert aud.active_count() == len(aud) - 1


def test_a_random_order_is_not_the_engagement_order() -> None:
    aud = make(order="random")
    top = [aud.engagement[i] for i in aud.planned_order()[:2000]]
    assert 0.3 < sum(top) / len(top) < 0.4        # about the mean, not the top of the list


def test_an_imported_list_joins_the_audience_with_its_own_shares() -> None:
    aud = make()
    before = len(aud)
    ids = aud.add(5000, {"yahoo": 1.0}, 0.05, 2.0, 0.3, 0.0, 0.02, "engagement", random.Random(3))
    assert list(ids) == list(range(before, before + 5000))
    assert {aud.isp[i] for i in ids} == {NAMES.index("yahoo")}
    assert 0.27 < sum(aud.invalid[i] for i in ids) / 5000 < 0.33
    assert len(aud.planned_order()) == before + 5000


def test_transactional_recipients_are_active_users_weighted_by_engagement() -> None:
    aud = make()
    picked = ActiveUserSampler(aud, random.Random(2)).draw(5000)
    assert not any(aud.invalid[i] for i in picked)
    mean_picked = sum(aud.engagement[i] for i in picked) / len(picked)
    assert mean_picked > 0.45          # the engaged get more receipts than the 0.35 average
