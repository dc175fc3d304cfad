"""Running `mta` as a real process (for kill -9, signals and the CLI)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def mta_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "mta.cli", *args]


def run_cli(*args: str, input: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(mta_command(*args), capture_output=True, text=True, input=input, timeout=timeout,
                          cwd=REPO, env={**os.environ, "PYTHONPATH": REPO})


class MtaProcess:
    def __init__(self, config_path: str, log_path: str) -> None:
        self.config_path = config_path
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, submit: tuple[str, int], timeout: float = 30) -> MtaProcess:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(mta_command("serve", "--config", self.config_path), stdout=log,
                                         stderr=log, cwd=REPO, env={**os.environ, "PYTHONPATH": REPO})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mta exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with socket.create_connection(submit, timeout=1) as s:
                    if s.recv(100).startswith(b"220"):
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mta did not start:\n{self.log_tail()}")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float = 30) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def wait_log(self, text: str, after: int = 0, timeout: float = 60) -> None:
        """Waits until `text` appears in the daemon's log after byte offset `after` (see log_size)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(self.log_path, "rb") as f:
                f.seek(after)
                if text.encode() in f.read():
                    return
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not in the daemon's log after {timeout:g}s:\n{self.log_tail()}")

    def log_size(self) -> int:
        return os.path.getsize(self.log_path)

    def log_tail(self, n: int = 30) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""
