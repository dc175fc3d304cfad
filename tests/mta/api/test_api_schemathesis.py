"""Schemathesis generates requests from /openapi.json (valid and invalid ones) against the real
daemon, run as a process, and fails on any 5xx answer. The default run is small and bounded;
`-m fuzz` runs a longer one."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.mta.conftest import base_config, write_config
from tests.mta.proc import REPO, MtaProcess, run_cli
from tests.support.receiver import free_port


def schemathesis_run(tmp_path, dns_server, mx_port, *options: str) -> subprocess.CompletedProcess[str]:
    api_port = free_port(["127.0.0.1"])
    cfg = base_config(str(tmp_path), dns_server, mx_port, api={"listen": f"127.0.0.1:{api_port}"},
                      mta={"hostname": "mta.test.example", "spool_dir": os.path.join(tmp_path, "spool"),
                           "log_level": "info", "min_free_space": "1M", "spool_ballast": 0})
    path = write_config(str(tmp_path), cfg)
    created = run_cli("api-key", "create", "--config", path, "--tenant", "fuzz")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    host, port = cfg["submission"]["listen"][0].rsplit(":", 1)
    mta = MtaProcess(path, os.path.join(tmp_path, "mta.log")).start((host, int(port)))
    try:
        run = subprocess.run(
            [os.path.join(os.path.dirname(sys.executable), "schemathesis"), "run",
             f"http://127.0.0.1:{api_port}/openapi.json", "--checks", "not_a_server_error",
             "-H", f"Authorization: Bearer {key}", "--generation-database", "none", "--no-color",
             "--request-timeout", "30", "--seed", "1", *options],
            capture_output=True, text=True, timeout=900, cwd=str(tmp_path), env={**os.environ, "PYTHONPATH": REPO})
    finally:
        assert mta.terminate() == 0, mta.log_tail()
    log = (tmp_path / "mta.log").read_text(encoding="utf-8", errors="replace")
    assert "Traceback" not in log, log[-5000:]
    return run


def test_schemathesis_finds_no_server_error(tmp_path, dns_server, mx_port):
    run = schemathesis_run(tmp_path, dns_server, mx_port, "--max-examples", "12", "--phases", "examples,fuzzing",
                           "--workers", "2")
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]


@pytest.mark.fuzz
def test_schemathesis_longer_run_finds_no_server_error(tmp_path, dns_server, mx_port):
    run = schemathesis_run(tmp_path, dns_server, mx_port, "--max-examples", "300", "--workers", "2")
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
