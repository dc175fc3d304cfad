"""What a simulation leaves behind: the daily CSV, the actions CSV, the JSON summary and the text summary."""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
from collections import Counter
from typing import Any

from policy.sim.stats import COLUMNS, SimResult, Tally

ADVERSE = ("throttle", "block", "hard_bounce_pause", "complaint_pause", "complaint_hold", "auth_failure",
           "mailbox_complaint", "hard_bounce_warning")


def _date(result: SimResult, day: int) -> str:
    at = result.start + (day - 1) * result.day_length
    return dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m-%d")


def _actions_text(counts: Counter[str] | None) -> str:
    return " ".join(f"{rule}:{n}" for rule, n in sorted((counts or Counter()).items()))


def write_daily_csv(result: SimResult, path: str) -> None:
    """One row per day and ISP, and one per day for all ISPs together ("all")."""
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["day", "date", "isp", *COLUMNS, "warmup_day", "reputation", "actions"])
        for record in result.days:
            date = _date(result, record.day)
            for isp in result.isps:
                tally = record.by_isp.get(isp, Tally())
                day = record.warmup_day.get(isp)
                reputation = record.reputation.get(isp)
                out.writerow([record.day, date, isp, *(getattr(tally, c) for c in COLUMNS),
                              "" if day is None else day, "" if reputation is None else f"{reputation:.3f}",
                              _actions_text(record.actions.get(isp))])
            everything: Counter[str] = Counter()
            for counts in record.actions.values():
                everything.update(counts)
            total = record.total()
            out.writerow([record.day, date, "all", *(getattr(total, c) for c in COLUMNS), "", "",
                          _actions_text(everything)])


def write_actions_csv(result: SimResult, path: str) -> None:
    """Every action the policy took, with its reason and the reply that caused it."""
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["time", "day", "pair", "rule", "action", "reason", "reply"])
        for a in result.actions:
            when = dt.datetime.fromtimestamp(a.at, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
            out.writerow([when, a.day, a.key, a.rule, a.action, a.reason, a.reply])


def write_json(summary: dict[str, Any], path: str) -> None:
    with open(path, "w") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")


def summary_text(result: SimResult, summary: dict[str, Any]) -> str:
    full = summary["days_to_full_volume"]
    lines = [f"scenario {summary['scenario'] or '-'}: {summary['days']} days, {summary['audience']:,} recipients "
             f"({summary['active_recipients_at_end']:,} still mailable at the end)"]
    if full:
        lines.append(f"full volume:        day {full} ({summary['full_volume_sent']:,} sent that day)")
    else:
        lines.append(f"full volume:        not reached in {summary['days']} days")
    ratio = summary["delivered_ratio"]
    lines.append("deliverability:     nothing sent" if ratio is None
                 else f"deliverability:     {ratio * 100:.2f}% delivered of {summary['sent']:,} attempts")
    lines.append(f"peak complaints:    {summary['peak_complaint_rate'] * 100:.3f}% of a day's deliveries")
    lines.append(f"bounced / deferred: {summary['bounced']:,} / {summary['deferred']:,}; "
                 f"complaints {summary['complaints']:,}")
    actions = summary["actions"]
    adverse = {k: v for k, v in actions.items() if k in ADVERSE}
    lines.append(f"policy actions:     {sum(actions.values()):,} ({_fmt(actions)})")
    if adverse:
        first = [a for a in result.actions if a.rule in ADVERSE][:5]
        lines.append("first reactions:")
        lines += [f"  day {a.day} {_clock(result, a.at)}  {a.key}  {a.rule}: {a.reason}" for a in first]
    for mark in result.incidents:
        lines.append(f"incident:           day {mark.day} {_clock(result, mark.start)}  {mark.label}")
    for loss in summary.get("throttle_loss", []):
        lines.append(f"throttle cost:      {loss['lost_share'] * 100:.1f}% of {loss['isp']}'s day {loss['day']} "
                     f"({loss['delivered']:,} delivered, {loss['delivered_day_before']:,} the day before)")
    lines.append(f"simulated in {summary['seconds']:.1f} s")
    return "\n".join(lines)


def _fmt(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])) or "none"


def _clock(result: SimResult, at: float) -> str:
    into = (at - result.start) % result.day_length
    return f"{int(into // 3600):02d}:{int(into % 3600 // 60):02d}"


def write_all(result: SimResult, summary: dict[str, Any], out_dir: str) -> list[str]:
    """Writes daily.csv, actions.csv, summary.json and summary.txt into `out_dir`; returns the paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = {name: os.path.join(out_dir, name) for name in ("daily.csv", "actions.csv", "summary.json",
                                                             "summary.txt")}
    write_daily_csv(result, paths["daily.csv"])
    write_actions_csv(result, paths["actions.csv"])
    write_json(summary, paths["summary.json"])
    with open(paths["summary.txt"], "w") as f:
        f.write(summary_text(result, summary) + "\n")
    return list(paths.values())
