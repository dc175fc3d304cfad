"""A real small file system for full-disk tests: a tmpfs of a few MB mounted for the test (needs
root, as CI has; the test is skipped with the reason where mounting is impossible), and a way to
fill it."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator

import pytest


@contextlib.contextmanager
def small_disk(path: str, size: str = "8m") -> Iterator[str]:
    os.makedirs(path, exist_ok=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", path],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {result.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", path], check=False)


def fill(directory: str, leave: int = 0, name: str = "filler") -> str:
    """Writes a file until the file system has at most `leave` bytes free (0: completely full)."""
    path = os.path.join(directory, name)
    with open(path, "ab") as f:
        for chunk in (1 << 20, 1 << 16, 1 << 12, 512):
            while True:
                st = os.statvfs(directory)
                if st.f_bavail * st.f_frsize - chunk < leave:
                    break
                try:
                    f.write(b"\0" * chunk)
                    f.flush()
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    return path


def free_bytes(directory: str) -> int:
    st = os.statvfs(directory)
    return st.f_bavail * st.f_frsize
