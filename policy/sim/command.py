"""`policyd simulate`: run a scenario against the policy config and report."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from policy.sim import chart, output
from policy.sim.policy_setup import load_policy
from policy.sim.scenario import load_scenario
from policy.sim.simulator import Simulator
from policy.sim.stats import SimResult
from warmup_base.configload import ConfigError


def run(config: str, scenario_path: str, days: int = 0, state_dir: str = "") -> SimResult:
    scenario = load_scenario(scenario_path)
    if days < 0:
        raise ConfigError(f"--days: must be positive, got {days}")
    cfg = load_policy(config, scenario.policy)
    return asyncio.run(Simulator(scenario, cfg, days or None, state_dir).run())


def simulate(args: argparse.Namespace) -> int:
    result = run(args.config, args.scenario, args.days, args.out)
    summary = result.summary()
    if args.out:
        written = output.write_all(result, summary, args.out)
        why_not = chart.draw(result, os.path.join(args.out, "chart.png"))
        if why_not:
            print(f"policyd simulate: {why_not}", file=sys.stderr)
        else:
            written.append(os.path.join(args.out, "chart.png"))
    if args.json:
        output.write_json(summary, args.json)
    if not args.quiet:
        print(output.summary_text(result, summary))
        if args.out:
            print("wrote " + ", ".join(written))
    return 0
