"""Signals and systemd's notify protocol, with the daemon as a real process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

from tests.mta.conftest import base_config, write_config
from tests.mta.proc import REPO, mta_command


def _recv_all(sock: socket.socket, want: str, timeout: float = 20) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            seen.append(sock.recv(4096).decode())
        except TimeoutError:
            break
        if any(want in s for s in seen):
            return seen
    raise AssertionError(f"no {want!r} from the daemon, got {seen}")


def test_notify_ready_reload_and_stop(tmp_path, dns_server, mx_port):
    cfg = base_config(str(tmp_path), dns_server, mx_port)
    path = write_config(str(tmp_path), cfg)
    notify_path = os.path.join(tmp_path, "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(notify_path)
        env = {**os.environ, "PYTHONPATH": REPO, "NOTIFY_SOCKET": notify_path}
        with open(os.path.join(tmp_path, "mta.log"), "wb") as log:
            proc = subprocess.Popen(mta_command("serve", "--config", path), cwd=REPO, env=env, stdout=log,
                                    stderr=log)
        try:
            assert any("READY=1" in s for s in _recv_all(sock, "READY=1"))
            events = cfg["mta"]["spool_dir"] + "/events.jsonl"
            os.rename(events, events + ".1") if os.path.exists(events) else None
            proc.send_signal(signal.SIGHUP)
            seen = _recv_all(sock, "READY=1")
            assert any("RELOADING=1" in s for s in seen)
            assert os.path.exists(events)      # reopened after "rotation"
            proc.send_signal(signal.SIGTERM)
            assert any("STOPPING=1" in s for s in _recv_all(sock, "STOPPING=1"))
            assert proc.wait(30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
