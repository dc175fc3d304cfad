"""conf/grafana/warmup-mta.json and conf/prometheus/alerts.yml name only metrics the daemons
register: the names come from the registries of a started MTA daemon and of policyd's Metrics,
with the sample suffixes Prometheus sees (`_total`, `_bucket`, `_sum`, `_count`). With promtool
installed, every dashboard query is also parsed as PromQL."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from mta.config import load_config
from mta.daemon.serve import MtaDaemon
from policy.metrics import Metrics as PolicyMetrics
from tests.support.receiver import free_port
from tests.support.tomlw import dumps

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "conf" / "grafana" / "warmup-mta.json"
ALERTS = REPO / "conf" / "prometheus" / "alerts.yml"
OUR_METRIC = re.compile(r"\b(?:mta|policyd)_[a-z0-9_]+\b")
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",),
            "summary": ("_sum", "_count", "")}


def _sample_names(registry) -> set[str]:  # type: ignore[no-untyped-def]
    names = set()
    for family in registry.collect():
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
    return names


@pytest.fixture
async def registered(tmp_path: Path) -> set[str]:
    config = tmp_path / "mta.toml"
    config.write_text(dumps({
        "mta": {"hostname": "mta.names.test", "spool_dir": str(tmp_path / "spool")},
        "submission": {"listen": [f"127.0.0.1:{free_port(['127.0.0.1'])}"]},
        "inbound": {"listen": [f"127.0.0.1:{free_port(['127.0.0.1'])}"], "bounce_domain": "bounces.names.test"},
        # Registered only when configured; nothing is sent to them here (no mail, no events).
        "webhooks": [{"url": "http://127.0.0.1:9/hooks", "secret": "whsec_" + "A" * 32}],
        "events": {"redis": "redis://127.0.0.1:9/0"},
    }))
    daemon = MtaDaemon(load_config(str(config)))
    await daemon.start()
    try:
        assert daemon.spool_gauges is not None
        await daemon.spool_gauges.refresh_now()      # the queue gauges exist once counted
        names = _sample_names(daemon.metrics.registry)
    finally:
        await daemon.stop()
    return names | _sample_names(PolicyMetrics().registry)


def _panels(panels: list[dict]) -> list[dict]:
    out = []
    for panel in panels:
        out.append(panel)
        out += _panels(panel.get("panels", []))
    return out


def _queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [(panel["title"], target["expr"]) for panel in _panels(dashboard["panels"])
            for target in panel.get("targets", [])]


def test_the_dashboard_shows_what_the_issue_asks_for() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"]
    queries = " ".join(expr for _title, expr in _queries())
    for metric in ("policyd_warmup_day", "policyd_used_today", "policyd_feedback_outcomes_total",
                   "mta_recipient_events_total", "mta_spool_site_recipients", "mta_spool_oldest_age_seconds",
                   "mta_accept_seconds_bucket", "policyd_actions_total"):
        assert metric in queries
    for panel in _panels(dashboard["panels"]):
        if panel["type"] != "row":
            assert panel.get("targets"), f"panel {panel['title']!r} has no query"
            assert panel["datasource"]["uid"] == "${datasource}"


def test_dashboard_queries_name_only_registered_metrics(registered: set[str]) -> None:
    unknown = {(title, name) for title, expr in _queries() for name in OUR_METRIC.findall(expr)
               if name not in registered}
    assert not unknown, f"not registered by either daemon: {sorted(unknown)}"


def test_alert_rules_name_only_registered_metrics(registered: set[str]) -> None:
    used = set(OUR_METRIC.findall(ALERTS.read_text()))
    assert used, "no metric found in the rules"
    assert not used - registered, f"not registered by either daemon: {sorted(used - registered)}"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (Debian package: prometheus)")
def test_dashboard_queries_parse_as_promql(tmp_path: Path) -> None:
    # Each query as a recording rule, so `promtool check rules` parses it; Grafana's
    # $__rate_interval becomes a plain range.
    rules = [{"record": f"dashboard:query_{i}", "expr": expr.replace("$__rate_interval", "5m")}
             for i, (_title, expr) in enumerate(_queries())]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))   # JSON is YAML
    res = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
