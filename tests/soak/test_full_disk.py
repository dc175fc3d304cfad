"""SIGKILL on a full spool disk under load (soak: `./scripts/test -m soak`).

Five sessions submit as fast as they can into `mta serve`, whose spool is on a 64 MB tmpfs,
delivering to a slow sink (a backlog of a few thousand builds). Three times: the disk is filled completely by
another file, the MTA is killed (SIGKILL) while refusing mail with 452, started again on the
full disk (it must start), then the file is removed (space returns). At the end every
acknowledged message must have been delivered; duplicates are counted.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.soak.harness import Rig
from tests.support.smalldisk import fill, free_bytes, small_disk

pytestmark = pytest.mark.soak

KILLS = 3


@pytest.mark.timeout(900)
def test_sigkill_on_a_full_disk_under_load(tmp_path: Path) -> None:
    with small_disk(str(tmp_path / "disk"), "64m") as disk:
        # Two connections to a sink taking 10 ms a message: mail arrives faster than it leaves, and the
        # queue itself fills the disk down to the reserve; the test's file takes the rest.
        rig = Rig(str(tmp_path), policy=False, sink_delay=0.01,
                  mta_extra={"mta": {"spool_dir": os.path.join(disk, "spool"), "min_free_space": "4M",
                                     "spool_ballast": "2M"},
                             "delivery": {"max_connections": 2}}).start()
        try:
            started = time.monotonic()
            load = rig.load(sessions=5, duration=KILLS * 12 + 5)
            restarts = []
            for _ in range(KILLS):
                time.sleep(4)
                filler = fill(disk)
                time.sleep(2)                               # refusing with 452, still delivering
                rig.mta.kill9()
                t0 = time.monotonic()
                rig.mta.start(rig.submit)                   # on the full disk
                restarts.append(round(time.monotonic() - t0, 2))
                assert free_bytes(disk) < 4 << 20
                time.sleep(3)
                os.unlink(filler)                           # space returns
            summary = load.wait(120)
            acked = load.acked()
            missing = rig.wait_delivered(set(acked), 600)
            duplicates = rig.duplicates()
            with open(rig.mta.log_path, encoding="utf-8", errors="replace") as f:
                log = f.read()
            print(f"full disk x{KILLS}: acked {len(acked)}, lost {len(missing)}, duplicates {duplicates} "
                  f"({duplicates / KILLS:.1f} per kill), restart to greeting {restarts}s, load {summary}, "
                  f"{time.monotonic() - started:.0f}s")
            assert not missing, sorted(missing)[:10]
            # The drained queue's space (free pages inside queue.db) counts, but the event log (on the
            # same file system here) has taken the rest while the backlog drained: rotate it, as
            # logrotate would (SIGHUP reopens it), and mail is accepted again.
            os.unlink(os.path.join(disk, "spool", "events.jsonl"))
            assert rig.mta.proc is not None
            rig.mta.proc.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 30
            while "has room again" not in log.rsplit("refusing new mail", 1)[-1] and time.monotonic() < deadline:
                time.sleep(1)
                with open(rig.mta.log_path, encoding="utf-8", errors="replace") as f:
                    log = f.read()
            assert "has room again" in log.rsplit("refusing new mail", 1)[-1]
            assert "Traceback" not in log
            assert "database or disk is full" not in log.split("cannot start")[-1] or "cannot start" not in log
        finally:
            rig.stop()
