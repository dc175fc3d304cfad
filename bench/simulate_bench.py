#!/usr/bin/env python3
"""How long `policyd simulate` takes: the default scenarios, 30 simulated days, 100,000 recipients.

Runs each scenario in-process (the same `run` the command uses), `--repeat` times, and prints
wall time, simulated minutes per second, message attempts per second and the run's headline
figures. Not a pass/fail test (tests/sim/test_acceptance.py has the < 60 s soak check); the
target is a 30-day, 100,000-recipient run well under 60 s on two shared cores.

    .venv/bin/python bench/simulate_bench.py
    .venv/bin/python bench/simulate_bench.py --scenarios clean --days 30 --repeat 3 --json var/bench/sim.json
    .venv/bin/python bench/simulate_bench.py --profile            # cProfile of one clean run, top 25
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from policy.sim.command import run  # noqa: E402

CONFIG = os.path.join(REPO, "conf", "policy.toml")


def scenario_path(name: str) -> str:
    return os.path.join(REPO, "conf", "scenarios", f"{name}.toml")


def one(name: str, days: int) -> dict[str, object]:
    began = time.perf_counter()
    result = run(CONFIG, scenario_path(name), days)
    seconds = time.perf_counter() - began
    summary = result.summary()
    minutes = len(result.days) * result.day_length / 60
    return {"scenario": name, "days": len(result.days), "audience": result.audience_size,
            "seconds": round(seconds, 2), "simulated_minutes_per_s": round(minutes / seconds),
            "attempts": summary["sent"], "attempts_per_s": round(summary["sent"] / seconds),
            "days_to_full_volume": summary["days_to_full_volume"], "delivered_ratio": summary["delivered_ratio"],
            "peak_complaint_rate": summary["peak_complaint_rate"], "actions": summary["actions"]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenarios", default="clean,bad-list,outreach", help="comma-separated names in conf/scenarios")
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--json", default="", help="write the results here")
    p.add_argument("--profile", action="store_true", help="profile one run of the first scenario instead")
    args = p.parse_args()
    names = [n.strip() for n in args.scenarios.split(",") if n.strip()]
    if args.profile:
        profile = cProfile.Profile()
        profile.runcall(run, CONFIG, scenario_path(names[0]), args.days)
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)
        return 0
    print(f"cpus: {os.cpu_count()}, load average: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    results = []
    for name in names:
        runs = [one(name, args.days) for _ in range(args.repeat)]
        times = [r["seconds"] for r in runs]
        best = runs[times.index(min(times))]
        best["median_seconds"] = round(statistics.median(times), 2)
        results.append(best)
        print(f"{name:10s} {best['days']} days x {best['audience']:,} recipients: {min(times):6.2f} s best, "
              f"{best['median_seconds']:6.2f} s median of {len(times)}; {best['attempts']:,} attempts "
              f"({best['attempts_per_s']:,}/s), {best['simulated_minutes_per_s']:,} simulated min/s; "
              f"full volume day {best['days_to_full_volume']}, delivered {best['delivered_ratio']}, "
              f"peak complaints {best['peak_complaint_rate']}")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
