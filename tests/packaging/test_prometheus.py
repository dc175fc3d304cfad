"""conf/prometheus/alerts.yml: valid rules (`promtool check rules`), whose unit tests pass
(`promtool test rules conf/prometheus/alerts_test.yml`). `promtool` comes from Debian's
`prometheus` package (scripts/test installs it). That the rules name only metrics the daemons
register is checked with the Grafana dashboard in test_dashboards.py."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

RULES = Path(__file__).resolve().parents[2] / "conf" / "prometheus"

pytestmark = pytest.mark.skipif(shutil.which("promtool") is None,
                                reason="promtool not installed (Debian package: prometheus)")


def _promtool(*args: str) -> str:
    res = subprocess.run(["promtool", *args], cwd=RULES, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout + res.stderr


def test_alert_rules_are_valid() -> None:
    out = _promtool("check", "rules", "alerts.yml")
    assert "SUCCESS" in out


def test_alert_rules_pass_their_unit_tests() -> None:
    out = _promtool("test", "rules", "alerts_test.yml")
    assert "SUCCESS" in out


def test_every_alert_is_unit_tested_firing() -> None:
    alerts = set(re.findall(r"^\s*- alert: (\w+)", (RULES / "alerts.yml").read_text(), re.M))
    tests = (RULES / "alerts_test.yml").read_text()
    firing = set(re.findall(r"alertname: (\w+)\n\s*exp_alerts:\n\s*- exp_labels:", tests))
    assert len(alerts) >= 8
    assert alerts == firing, f"alerts without a firing test: {sorted(alerts - firing)}"
