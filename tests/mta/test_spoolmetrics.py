"""The on-disk queue gauges: bounded site labels, held mail not counted as waiting, and the spool
counted on a read-only connection of its own."""

from __future__ import annotations

from mta.spool.gauges import OTHER, SpoolGauges, group_sites
from mta.spool.store import SiteBacklog


def test_the_largest_sites_keep_their_label_and_the_rest_add_up_as_other() -> None:
    rows = [SiteBacklog("big", "queued", 100, 90, 500.0), SiteBacklog("big", "held", 5, 5, 10.0),
            SiteBacklog("mid", "deferred", 50, 50, 300.0), SiteBacklog("small", "queued", 2, 2, 200.0),
            SiteBacklog("tiny", "held", 1, 1, 50.0)]
    sites, oldest = group_sites(rows, max_sites=2)
    assert set(sites) == {"big", "mid", OTHER}
    assert sites["big"].recipients == {"queued": 100, "held": 5}
    assert sites["big"].oldest == 500.0            # the held message (10.0) is not waiting
    assert sites[OTHER].recipients == {"queued": 2, "held": 1}
    assert sites[OTHER].oldest == 200.0
    assert oldest == 200.0


def test_an_empty_spool_has_no_oldest_message(tmp_path) -> None:
    from mta.spool.store import SpoolStore

    SpoolStore(str(tmp_path)).close()
    gauges = SpoolGauges(str(tmp_path), clock=lambda: 1000.0)
    count = gauges.refresh()
    assert (count.messages, count.sites, count.oldest) == (0, {}, 0.0)
    names = {m.name for m in gauges.collect()}
    assert {"mta_spool_messages", "mta_spool_oldest_age_seconds", "mta_spool_filesystem_avail_bytes"} <= names
