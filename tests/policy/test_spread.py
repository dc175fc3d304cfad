"""Sources without any bucket share a grant, so a pool's IPs all carry traffic."""

from __future__ import annotations

from policy.engine.bucket import BucketSpec, TakePlan
from policy.engine.policy import GrantPlan, spread_unlimited


def plan(*sources: tuple[str, tuple[BucketSpec, ...]]) -> GrantPlan:
    return GrantPlan(TakePlan((), tuple(sources), 100, 0))


def test_unlimited_sources_share_evenly_and_rotate():
    p = plan(("ip1", ()), ("ip2", ()), ("ip3", ()))
    assert sorted(spread_unlimited([("ip1", 10)], p, now=0.0)) == [("ip1", 4), ("ip2", 3), ("ip3", 3)]
    # The remainder goes to another source as the clock moves on.
    assert dict(spread_unlimited([("ip1", 1)], p, now=1.0)) == {"ip2": 1}
    assert dict(spread_unlimited([("ip1", 1)], p, now=2.0)) == {"ip3": 1}


def test_sources_with_buckets_keep_their_grant():
    bucket = BucketSpec("ip|ip1|google", 1.0, 10.0, 100.0)
    p = plan(("ip1", (bucket,)), ("ip2", ()), ("ip3", ()))
    out = dict(spread_unlimited([("ip1", 5), ("ip2", 6)], p, now=0.0))
    assert out == {"ip1": 5, "ip2": 3, "ip3": 3}


def test_single_source_unchanged():
    p = plan(("ip1", ()))
    assert spread_unlimited([("ip1", 7)], p, now=5.0) == [("ip1", 7)]
