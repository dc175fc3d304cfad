"""The free-space guard with an injected statvfs and clock, and its config key."""

from __future__ import annotations

import os
import sqlite3
from types import SimpleNamespace

import pytest

from mta.config import ConfigError, load_config
from mta.spool.diskspace import DiskGuard, FreeSpaceReserve, declared_size, is_disk_full, parse_reserve

MB = 1 << 20


class FakeFs:
    def __init__(self, free: int, total: int = 1000 * MB) -> None:
        self.free, self.total = free, total

    def __call__(self, _path: str) -> SimpleNamespace:
        return SimpleNamespace(f_bavail=self.free // 4096, f_frsize=4096, f_blocks=self.total // 4096)


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def guard(tmp_path, fs: FakeFs, reserve: FreeSpaceReserve, clock: Clock | None = None, ballast: int = 0,
          changes: list[bool] | None = None) -> DiskGuard:
    return DiskGuard(str(tmp_path), reserve, ballast=ballast, statvfs=fs, clock=clock or Clock(), recheck=0,
                     on_low=(changes.append if changes is not None else None))


def test_reserve_parses_sizes_percentages_and_both():
    assert parse_reserve("500M", "k") == FreeSpaceReserve(500 * MB, 0.0)
    assert parse_reserve("2%", "k") == FreeSpaceReserve(0, 2.0)
    assert parse_reserve(["1G", "5 %"], "k") == FreeSpaceReserve(1024 * MB, 5.0)
    assert parse_reserve(0, "k") == FreeSpaceReserve(0, 0.0)
    assert FreeSpaceReserve(100 * MB, 5.0).bytes_for(10_000 * MB) == 500 * MB     # the larger wins


@pytest.mark.parametrize("value, key", [("lots", "mta.min_free_space"), ("150%", "mta.min_free_space"),
                                        (["1G", "x"], "mta.min_free_space[1]"), (-1, "mta.min_free_space")])
def test_a_bad_min_free_space_is_named_at_start_up(tmp_path, value, key):
    path = tmp_path / "mta.toml"
    rendered = repr(value).replace("'", '"')
    path.write_text(f'[mta]\nspool_dir = "{tmp_path}"\nmin_free_space = {rendered}\n')
    with pytest.raises(ConfigError, match=r"^" + key.replace("[", r"\[").replace("]", r"\]")):
        load_config(str(path))


def test_new_mail_is_refused_below_the_reserve_and_one_change_per_episode(tmp_path):
    fs, changes = FakeFs(free=600 * MB), []
    g = guard(tmp_path, fs, FreeSpaceReserve(500 * MB), changes=changes)
    assert g.room_for(10 * MB)
    assert not g.room_for(60 * MB)                  # declared SIZE (twice, for WAL and database) too big
    assert changes == []                            # one big message is not an episode
    fs.free = 400 * MB
    for _ in range(100):
        assert not g.room_for(0)
    fs.free = 700 * MB
    assert g.room_for(0)
    assert changes == [True, False]


def test_a_failed_write_holds_refusals_until_space_comes_back(tmp_path):
    fs, clock = FakeFs(free=50 * MB), Clock()
    g = guard(tmp_path, fs, FreeSpaceReserve(0), clock=clock)
    assert g.room_for(0)
    g.note_full(sqlite3.OperationalError("database or disk is full"))
    assert not g.room_for(0)
    clock.t += 60
    assert not g.room_for(0)                        # nothing freed: still full
    fs.free += 2 * MB
    assert g.room_for(0)


def test_the_ballast_is_given_back_on_a_full_disk_and_counts_as_reserve(tmp_path):
    fs = FakeFs(free=100 * MB)
    g = guard(tmp_path, fs, FreeSpaceReserve(10 * MB), ballast=1 * MB)
    g.ensure_ballast()
    ballast = os.path.join(str(tmp_path), "ballast")
    assert os.path.getsize(ballast) == MB
    g.note_full(OSError(28, "No space left on device"))
    assert not os.path.exists(ballast)
    assert g.free == 100 * MB - MB                  # the ballast's space is not for new mail


def test_disk_full_errors_are_recognised():
    assert is_disk_full(sqlite3.OperationalError("database or disk is full"))
    assert is_disk_full(OSError(28, "No space left on device"))
    assert not is_disk_full(sqlite3.OperationalError("no such table: x"))
    try:
        try:
            raise sqlite3.OperationalError("database or disk is full")
        except sqlite3.Error:
            raise sqlite3.OperationalError("no such savepoint: op") from None
    except sqlite3.Error as exc:
        assert is_disk_full(exc)                    # found through __context__


def test_declared_size():
    assert declared_size(["BODY=8BITMIME", "SIZE=12345"]) == 12345
    assert declared_size(["SIZE=abc"]) == 0
    assert declared_size([]) == 0
