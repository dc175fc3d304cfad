"""The PNG: daily volume per ISP with incidents and the policy's reactions marked, and the warm-up day.

matplotlib is an optional extra (`pip install .[plot]`); without it `draw` says so and draws nothing.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from policy.sim.output import ADVERSE
from policy.sim.stats import SimResult

if TYPE_CHECKING:
    from matplotlib.axes import Axes

MISSING = "matplotlib is not installed (pip install 'warmup-mta[plot]'): no chart drawn"


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def draw(result: SimResult, path: str) -> str | None:
    """Writes the chart to `path`; returns None, or why nothing was drawn."""
    try:
        import matplotlib
    except ImportError:
        return MISSING
    matplotlib.use("Agg")           # files only: no display needed
    import matplotlib.pyplot as plt

    days = [d.day for d in result.days]
    fig, (volume, warmup) = plt.subplots(2, 1, figsize=(11, 7.5), sharex=True,
                                         gridspec_kw={"height_ratios": [3, 1.4]})
    colours = {}
    for isp in result.isps:
        sent = [d.by_isp[isp].sent for d in result.days]
        (line,) = volume.plot(days, sent, marker=".", label=isp)
        colours[isp] = line.get_color()
    volume.plot(days, [d.total().delivered for d in result.days], color="black", linewidth=1.5,
                linestyle="--", label="delivered, all ISPs")
    _mark_actions(volume, result, colours)
    for mark in result.incidents:
        day = (mark.start - result.start) / result.day_length + 1
        volume.axvline(day, color="red", alpha=0.5, linestyle=":")
        volume.annotate(mark.label, (day, 1.0), xycoords=("data", "axes fraction"), rotation=90,
                        va="top", ha="right", fontsize=8, color="red")
    full = result.days_to_full_volume()
    if full:
        volume.axvline(full, color="green", alpha=0.4)
        volume.annotate(f"full volume (day {full})", (full, 0.02), xycoords=("data", "axes fraction"),
                        rotation=90, va="bottom", ha="right", fontsize=8, color="green")
    volume.set_ylabel("messages sent per day")
    volume.set_title(f"Warm-up simulation: {result.scenario or 'scenario'}")
    volume.legend(loc="upper left", fontsize=8)
    volume.grid(alpha=0.3)
    for isp in result.isps:
        warmup.step(days, [d.warmup_day.get(isp, 0) for d in result.days], where="mid", color=colours[isp],
                    label=isp)
    warmup.set_ylabel("warm-up day\n(lowest IP)")
    warmup.set_xlabel("simulated day")
    warmup.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def _mark_actions(ax: Axes, result: SimResult, colours: dict[str, str]) -> None:
    """A cross on an ISP's line for each day the policy reacted there, sized by how often."""
    per_day: Counter[tuple[int, str]] = Counter()
    for record in result.days:
        for isp, counts in record.actions.items():
            n = sum(v for rule, v in counts.items() if rule in ADVERSE)
            if n and isp in colours:
                per_day[(record.day, isp)] += n
    for (day, isp), n in sorted(per_day.items()):
        sent = result.days[day - 1].by_isp[isp].sent
        ax.scatter([day], [sent], marker="x", s=30 + 8 * min(n, 30), color=colours[isp], zorder=3)
    if per_day:     # one neutral legend entry for all the crosses
        ax.scatter([], [], marker="x", color="black", label="policy reacted (throttle, pause, hold ...)")
