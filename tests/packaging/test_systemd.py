"""The shipped systemd units: `systemd-analyze verify` says nothing, `systemd-analyze security
--offline=true` scores each at most 2.5, they name the one documented install path and each other by
their real names, and the directories they write to are made by systemd (StateDirectory=...) or by
the shipped tmpfiles.d file, for the user the shipped sysusers.d file makes.

`systemd-analyze` comes from Debian's `systemd` package (scripts/test installs it).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNITS = REPO / "systemd"
INSTALL_BIN = "/opt/warmup-mta/bin/"
MAX_EXPOSURE = 2.5

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                reason="systemd-analyze not installed (Debian package: systemd)")


def _directives(unit: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in (UNITS / unit).read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def _analyze(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True, timeout=60)


@pytest.fixture
def installed_units(tmp_path: Path) -> Path:
    """The units with the install path pointing at this test run's console scripts: `verify` checks
    that every command exists, and nothing is installed under /opt on a test machine."""
    scripts = Path(sys.executable).parent
    for name in ("mta", "policyd"):
        assert (scripts / name).exists(), f"no {name} console script next to {sys.executable}"
    for unit in ("mta.service", "policyd.service"):
        text = (UNITS / unit).read_text().replace(INSTALL_BIN, f"{scripts}/")
        (tmp_path / unit).write_text(text)
    return tmp_path


def test_units_pass_systemd_analyze_verify(installed_units: Path) -> None:
    res = _analyze("verify", str(installed_units / "mta.service"), str(installed_units / "policyd.service"))
    assert res.returncode == 0 and not res.stdout.strip() and not res.stderr.strip(), res.stdout + res.stderr


@pytest.mark.parametrize("unit", ["mta.service", "policyd.service"])
def test_unit_exposure_is_at_most_2_5(unit: str, installed_units: Path) -> None:
    res = _analyze("security", "--offline=true", "--no-pager", str(installed_units / unit))
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", res.stdout)
    assert found, res.stdout + res.stderr
    score = float(found.group(1))
    assert score <= MAX_EXPOSURE, f"{unit}: exposure {score}\n" + "\n".join(
        line for line in res.stdout.splitlines() if line.startswith("✗"))


def test_units_run_the_documented_install_path() -> None:
    readme = (REPO / "README.md").read_text()
    assert "python3 -m venv /opt/warmup-mta" in readme
    for unit, command in (("mta.service", "mta"), ("policyd.service", "policyd")):
        d = _directives(unit)
        assert d["ExecStart"][0].startswith(f"{INSTALL_BIN}{command} serve --config /etc/warmup-mta/"), d["ExecStart"]
        for line in d.get("ExecStartPre", []) + d["ExecStart"]:
            assert line.startswith(INSTALL_BIN), line
            assert line.split()[-1] in readme, f"README does not name {line.split()[-1]}"
        assert "Documentation" not in d or all(not v.startswith("file:") for v in d["Documentation"])


def test_units_name_each_other_by_their_real_names() -> None:
    shipped = {p.name for p in UNITS.glob("*.service")}
    for unit in shipped:
        d = _directives(unit)
        for key in ("Before", "After", "Wants", "Requires", "BindsTo"):
            for value in d.get(key, []):
                for name in value.split():
                    if name.startswith(("mta", "policyd", "warmup")):
                        assert name in shipped, f"{unit}: {key}={name}, but the unit is one of {sorted(shipped)}"
    assert "mta.service" in _directives("policyd.service")["Before"][0].split()
    assert "policyd.service" in _directives("mta.service")["After"][0].split()


def _tmpfiles_dirs() -> dict[str, tuple[str, str, str]]:
    out = {}
    for line in (UNITS / "warmup-mta.tmpfiles").read_text().splitlines():
        fields = line.split()
        if fields and fields[0] == "d":
            out[fields[1]] = (fields[2], fields[3], fields[4])
    return out


def test_every_writable_path_is_made_for_the_service_user() -> None:
    made = _tmpfiles_dirs()
    for unit in ("mta.service", "policyd.service"):
        d = _directives(unit)
        user = d["User"][0]
        for value in d.get("ReadWritePaths", []):
            for path in value.split():
                path = path.lstrip("-")
                assert path in made, f"{unit}: ReadWritePaths={path} is made by nothing (not in the tmpfiles file)"
                _mode, owner, group = made[path]
                assert (owner, group) == (user, d["Group"][0]), f"{path} belongs to {owner}:{group}, not {user}"
        for key, base in (("StateDirectory", "/var/lib/"), ("LogsDirectory", "/var/log/"),
                          ("RuntimeDirectory", "/run/")):
            for value in d.get(key, []):
                assert not value.startswith("/"), f"{unit}: {key}= is relative to {base}"
    sysusers = (UNITS / "warmup-mta.sysusers").read_text()
    assert re.search(r"^u\s+warmup-mta\s", sysusers, re.M)


@pytest.mark.skipif(os.geteuid() != 0, reason="systemd-tmpfiles must be root to give the spool to its user")
def test_sysusers_and_tmpfiles_make_the_user_and_the_spool(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    res = subprocess.run(["systemd-sysusers", f"--root={root}", str(UNITS / "warmup-mta.sysusers")],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    uid = next(int(line.split(":")[2]) for line in (root / "etc" / "passwd").read_text().splitlines()
               if line.startswith("warmup-mta:"))
    res = subprocess.run(["systemd-tmpfiles", f"--root={root}", "--create", str(UNITS / "warmup-mta.tmpfiles")],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    spool = (root / "var" / "spool" / "warmup-mta").stat()
    assert spool.st_uid == uid and oct(spool.st_mode & 0o777) == "0o750"
