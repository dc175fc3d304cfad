"""`policyd simulate` as operators run it: files written, JSON summary, clear errors, chart optional."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from policy.cli import main
from tests.sim.conftest import POLICY, REPO

SCENARIO = """
[simulation]
seed = 11
days = 3

[audience]
size = 2000

[[sources]]
name = "ip1"
address = "192.0.2.1"

[[streams]]
name = "news"
kind = "newsletter"
sources = ["ip1"]
sending_domain = "news.example.test"

[[incidents]]
kind = "isp_throttle"
isp = "google"
day = 2
at = "12h"
"""


@pytest.fixture
def scenario_file(tmp_path: Path) -> Path:
    path = tmp_path / "small.toml"
    path.write_text(SCENARIO)
    return path


def policyd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "policy.cli", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=120)


def test_simulate_writes_the_daily_csv_actions_chart_and_json_summary(scenario_file: Path, tmp_path: Path) -> None:
    out, summary = tmp_path / "out", tmp_path / "summary.json"
    done = policyd("simulate", "--config", POLICY, "--scenario", str(scenario_file), "--out", str(out),
                   "--json", str(summary))
    assert done.returncode == 0, done.stderr
    assert "full volume:" in done.stdout and "deliverability:" in done.stdout
    data = json.loads(summary.read_text())
    assert set(data) >= {"days_to_full_volume", "delivered_ratio", "peak_complaint_rate", "actions", "sent_per_day"}
    assert len(data["sent_per_day"]) == 3 and data["sent_per_day"][0] == 4 * 50    # one IP, four ISPs, day 0
    assert data["actions"]["throttle"] >= 1 and 0 < data["delivered_ratio"] <= 1
    assert json.loads((out / "summary.json").read_text()) == data
    with open(out / "daily.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 * 5 and {r["isp"] for r in rows} == {"google", "yahoo", "microsoft", "other", "all"}
    day2 = {r["isp"]: r for r in rows if r["day"] == "2"}
    assert int(day2["all"]["sent"]) == sum(int(day2[i]["sent"]) for i in ("google", "yahoo", "microsoft", "other"))
    assert "throttle:" in day2["google"]["actions"] and day2["google"]["date"] == "2025-03-04"
    assert day2["google"]["warmup_day"] == "1"
    with open(out / "actions.csv") as f:
        assert len(list(csv.DictReader(f))) == sum(data["actions"].values())
    if (out / "chart.png").exists():
        assert (out / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        assert "matplotlib is not installed" in done.stderr


def test_the_chart_is_a_png_when_matplotlib_is_there(scenario_file: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    assert main(["simulate", "--config", POLICY, "--scenario", str(scenario_file), "--days", "2",
                 "--out", str(tmp_path), "--quiet"]) == 0
    assert (tmp_path / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "chart.png").stat().st_size > 10_000


def test_without_matplotlib_the_chart_is_skipped_saying_so(scenario_file: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)     # import matplotlib now raises ImportError
    assert main(["simulate", "--config", POLICY, "--scenario", str(scenario_file), "--days", "1",
                 "--out", str(tmp_path), "--quiet"]) == 0
    assert "matplotlib is not installed" in capsys.readouterr().err
    assert not (tmp_path / "chart.png").exists() and (tmp_path / "daily.csv").exists()


def test_days_on_the_command_line_override_the_scenario(scenario_file: Path, tmp_path: Path) -> None:
    assert main(["simulate", "--config", POLICY, "--scenario", str(scenario_file), "--days", "1",
                 "--json", str(tmp_path / "s.json"), "--quiet"]) == 0
    assert len(json.loads((tmp_path / "s.json").read_text())["sent_per_day"]) == 1


def test_a_bad_scenario_key_exits_2_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(SCENARIO.replace('kind = "newsletter"', 'kind = "weekly"'))
    done = policyd("simulate", "--config", POLICY, "--scenario", str(path))
    assert done.returncode == 2
    assert "config error: streams[0].kind" in done.stderr


def test_a_missing_scenario_file_exits_2(tmp_path: Path) -> None:
    done = policyd("simulate", "--config", POLICY, "--scenario", str(tmp_path / "nope.toml"))
    assert done.returncode == 2 and "cannot read scenario" in done.stderr
