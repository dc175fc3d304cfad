"""Both daemons' /metrics scraped over HTTP while mail flows: the on-disk queue gauges follow the
spool, per-ISP outcomes and pauses show in policyd's, and both answer in the same format with no
`_created` series."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families

from tests.mta.conftest import message
from tests.mta.policyd import ONE_SOURCE, isp_domains
from tests.support.receiver import free_port

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> tuple[str, str, Samples]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        ctype, text = resp.headers["Content-Type"], resp.read().decode()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    return ctype, text, samples


def total(samples: Samples, metric: str, /, **labels: str) -> float:
    return sum(v for (n, ls), v in samples.items()
               if n == metric and all(dict(ls).get(k) == want for k, want in labels.items()))


async def wait_scrape(port: int, ok: Callable[[Samples], bool], what: str, timeout: float = 20) -> Samples:
    deadline = time.monotonic() + timeout
    while True:
        _ctype, _text, samples = await asyncio.to_thread(scrape, port)
        if ok(samples):
            return samples
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: {sorted((k, v) for k, v in samples.items() if 'spool' in k[0])}")
        await asyncio.sleep(0.1)


async def test_queue_gauges_follow_the_spool_and_both_daemons_serve_one_format(
        start_mta, world, dns_server, policyd_factory):
    google, _yahoo = isp_domains(world, dns_server)
    policy_metrics, mta_metrics = free_port(["127.0.0.1"]), free_port(["127.0.0.1"])
    policyd = policyd_factory(metrics={"listen": f"127.0.0.1:{policy_metrics}"},
                              leases={"idle_retry": "1s"})   # the MTA asks again soon after the resume
    policyd.cli("pause", "--isp", "google", "--reason", "metrics test")
    mta = await start_mta(policy={"address": policyd.address}, egress=ONE_SOURCE,
                          metrics={"listen": f"127.0.0.1:{mta_metrics}", "queue_interval": "0.1s"})
    for i in range(3):
        await mta.send("a@sender.example", [f"u{i}@gmail.example"], message())

    # Held back by the pause: on disk, never attempted, and getting older.
    held = await wait_scrape(mta_metrics, lambda s: total(s, "mta_spool_site_recipients", state="queued") == 3,
                             "three queued recipients")
    assert total(held, "mta_spool_messages") == 3
    assert total(held, "mta_spool_site_messages", site="gmail.example", state="queued") == 3
    assert total(held, "mta_spool_oldest_age_seconds") >= 0
    assert total(held, "mta_spool_filesystem_size_bytes") >= total(held, "mta_spool_filesystem_avail_bytes") > 0
    _ctype, _text, policy_samples = await asyncio.to_thread(scrape, policy_metrics)
    assert total(policy_samples, "policyd_paused", kind="isp", name="google") == 1
    await asyncio.sleep(0.5)
    older = await wait_scrape(mta_metrics, lambda s: total(s, "mta_spool_oldest_age_seconds") > 0.4, "ageing")
    assert total(older, "mta_spool_oldest_age_seconds") < 30

    policyd.cli("resume", "--isp", "google", "--reason", "metrics test")
    await google.await_for(3, timeout=30)
    drained = await wait_scrape(mta_metrics, lambda s: total(s, "mta_spool_messages") == 0, "an empty spool")
    assert total(drained, "mta_spool_site_recipients") == 0
    assert total(drained, "mta_spool_oldest_age_seconds") == 0
    assert total(drained, "mta_delivery_replies_total", **{"class": "2xx"}) == 3
    assert total(drained, "mta_recipient_events_total", event="delivered") == 3
    await wait_scrape(policy_metrics, lambda s: total(s, "policyd_feedback_outcomes_total", isp="google",
                                                      cls="delivered") == 3, "delivered outcomes for google")

    mta_type, mta_text, _ = await asyncio.to_thread(scrape, mta_metrics)
    policy_type, policy_text, _ = await asyncio.to_thread(scrape, policy_metrics)
    assert mta_type == policy_type == "text/plain; version=0.0.4; charset=utf-8"
    for text in (mta_text, policy_text):
        assert "_created" not in text
        assert "# TYPE" in text
