"""What an MTA under test holds back and why, and what policyd did about it: conditions that tests
wait on (see tests/support/waiting.py) instead of sleeping for as long as things usually take."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from typing import Any

from mta.queue.site import LaneKey
from tests.mta.policyd import Policyd
from tests.mta.proc import REPO, mta_command
from tests.support.receiver import Receiver
from tests.support.waiting import until


async def history(policyd: Policyd) -> list[dict[str, Any]]:
    """policyd's recorded actions (the CLI runs in a thread, so the MTA in this loop keeps
    delivering and reporting meanwhile)."""
    out = await asyncio.to_thread(policyd.cli, "history", "--json", "--limit", "500")
    return [json.loads(line) for line in out.splitlines() if line.strip()]


async def history_until(policyd: Policyd, wanted: Callable[[dict[str, Any]], bool],
                        timeout: float = 60.0) -> list[dict[str, Any]]:
    """policyd's recorded actions, once one of them satisfies `wanted`."""
    seen: list[dict[str, Any]] = []

    async def found() -> list[dict[str, Any]] | None:
        seen[:] = await history(policyd)
        return seen if any(wanted(a) for a in seen) else None
    try:
        return await until(found, "such an action in policyd's history", timeout, every=0.5)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; its actions: {seen}") from None


def pauses(actions: list[dict[str, Any]]) -> set[str]:
    return {a["key"] for a in actions if a["action"] == "pause"}


def holds_leases(mta: Any, lane_matches: Callable[[LaneKey], bool] = lambda _key: True) -> bool:
    """Whether a lane of `mta` may still send (a lease with messages left, or a grant request in
    flight): a pause holds back what is asked for after it, while leases granted before it are
    spent until their ttl runs out. Read from the scheduler, as no operator view shows leases."""
    now = mta.clock()
    return any(lane.requesting or lane.granted(now) > 0 for site in mta.daemon.scheduler.sites.values()
               for lane in site.lanes.values() if lane_matches(lane.key))


async def queue_list(mta: Any) -> list[dict[str, Any]]:
    """`mta queue list --json`, as an operator runs it beside the daemon."""
    cli = await asyncio.create_subprocess_exec(*mta_command("queue", "list", "--json", "--config", mta.config_path),
                                               stdout=asyncio.subprocess.PIPE, cwd=REPO,
                                               env={**os.environ, "PYTHONPATH": REPO})
    out, _ = await cli.communicate()
    return json.loads(out)


async def held_back(mta: Any, receiver: Receiver, new: set[str], reason: str) -> dict[str, str]:
    """Waits until every address of `new` is queued with `reason` in what it waits for (the MTA
    asked and was refused), and returns what waits, by recipient; fails at once if one of them
    reached `receiver`."""
    async def check() -> dict[str, str] | None:
        tried = new & receiver.tried()
        assert not tried, f"tried although held back: {sorted(tried)}"
        waiting = {r["recipient"]: m["waiting"] for m in await queue_list(mta) for r in m["recipients"]}
        if new <= waiting.keys() and all(reason in waiting[a] for a in new):
            return waiting
        return None
    return await until(check, f"all of {sorted(new)} held back by {reason!r}", every=0.3)
