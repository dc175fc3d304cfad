"""Judging a pair's mail by culprit: which tenant, sending domain, campaign or sender carries the
trouble on an (IP, ISP) or (domain, ISP) pair.

A culprit whose own bounce or complaint rate is over a threshold gets the verdict, and its mail
(on this pair) is set aside, so the pair's own rules judge only what is left: the trouble spread
over the rest. Two or more culprits of one kind that carry most of the pair's mail are no
culprits: that is spread trouble too (the next, coarser kind may still explain it). A culprit's
counts, once acted on, are not judged again (Health.since).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from policy.engine import rules
from policy.engine.health import Counts, Health
from policy.engine.settings import RuleSettings
from policy.engine.state import CAMPAIGN, DOMAIN, IP, SENDER, TENANT, PairKey
from policy.engine.windows import HealthWindows

# Culprit dimensions of a part id ("tenant|domain|campaign|sender"), most specific first
DIMENSIONS = ((CAMPAIGN, 2), (SENDER, 3), (DOMAIN, 1), (TENANT, 0))
NAMES = {CAMPAIGN: "campaign", SENDER: "sender", DOMAIN: "sending domain", TENANT: "tenant"}

Live = dict[str, dict[int, Counts]]     # part id -> slot -> counts not yet explained


@dataclass
class Assessment:
    """A pair's health judged by culprit: verdicts on culprits, and per slot what is left."""

    verdicts: list[rules.Verdict] = field(default_factory=list)
    rest: dict[int, Counts] = field(default_factory=dict)     # slot -> counts no culprit explains


def assess(key: PairKey, health: Health, now: float, observed: rules.Observed | None,
           settings: RuleSettings, windows: HealthWindows) -> Assessment:
    """The verdicts on `key`'s culprits and what is left for the pair's own rules; updates
    `health.since` for the culprits paused."""
    out = Assessment()
    if key.kind not in (IP, DOMAIN):
        return out
    slot, n = windows.slot(now), settings.health_slots
    first_recent = slot - windows.recent_slots
    by_part = health.part_windows(slot, n)
    totals = {s: c for s, c in health.slots.items() if slot - n < s <= slot}
    out.rest = {s: c.copy() for s, c in totals.items()}
    if not by_part:
        return out

    def judged_from(part: str) -> int:
        values = part.split("|")
        if len(values) != 4:
            return -1
        return max((health.since.get(f"{dim}:{values[i]}", -1) for dim, i in DIMENSIONS if values[i]), default=-1)

    # Mail already acted on is set aside first.
    live: Live = {}
    for part, slots in by_part.items():
        after = judged_from(part)
        for s, counts in slots.items():
            if s <= after:
                out.rest[s] = out.rest.get(s, Counts()).minus(counts)
            else:
                live.setdefault(part, {})[s] = counts
    sent_all = sum(c.sent for c in out.rest.values())
    # a domain pair judges what is finer than the domain only
    dimensions = [(d, i) for d, i in DIMENSIONS if key.kind != DOMAIN or d not in (DOMAIN, TENANT)]
    for rank, (dim, index) in enumerate(dimensions):
        groups: dict[str, list[str]] = {}
        for part in live:
            values = part.split("|")
            if len(values) == 4 and values[index]:
                groups.setdefault(values[index], []).append(part)
        found: list[tuple[str, list[rules.Verdict], list[str], int]] = []
        for value, parts in groups.items():
            full, recent = _merged(live, parts, first_recent)
            culprit = PairKey(dim, value, key.isp)
            what = f"{NAMES[dim]} {value} on {key}: "
            found_here = rules.verdicts(culprit, windows.labelled(full, recent), observed or {}, settings, what)
            if found_here:
                found.append((value, found_here, parts, full.sent))
        found = [f for f in found
                 if not _left_to_a_finer_culprit(dimensions[:rank], f[1], f[2], live, out.rest, settings)]
        if not found:
            continue
        if len(found) >= 2 and sum(f[3] for f in found) > 0.5 * max(1, sent_all):
            continue        # most of the pair's mail is bad: spread, not one culprit
        for value, found_here, parts, _sent in found:
            rest_note = _rest_note(out.rest, live, parts)
            out.verdicts += [replace(v, reason=f"{v.reason}; {rest_note}") for v in found_here]
            if any(v.rule in rules.PAUSES for v in found_here):
                health.since[f"{dim}:{value}"] = slot     # acted on: not judged again
            for part in parts:      # explained by its culprit: not the pair's own trouble
                for s, counts in live.pop(part, {}).items():
                    out.rest[s] = out.rest.get(s, Counts()).minus(counts)
    # The pair itself is the coarsest culprit of all: the same wait for a finer one applies.
    full, recent = _merged(live, list(live), first_recent)
    pair_found = rules.verdicts(key, windows.labelled(full, recent), {}, settings)
    if pair_found:
        _left_to_a_finer_culprit(dimensions, pair_found, list(live), live, out.rest, settings)
    return out


def _merged(live: Live, parts: list[str], first_recent: int) -> tuple[Counts, Counts]:
    """The counts of `parts` over the whole window and over the recent one."""
    full, recent = Counts(), Counts()
    for part in parts:
        for s, counts in live[part].items():
            full.merge(counts)
            if s > first_recent:
                recent.merge(counts)
    return full, recent


def _left_to_a_finer_culprit(finer: list[tuple[str, int]], found: list[rules.Verdict], parts: list[str],
                             live: Live, rest: dict[int, Counts], settings: RuleSettings) -> bool:
    """Whether a coarser culprit's verdicts (a sender's, a domain's, the pair's own) wait for a
    finer one (of the `finer` dimensions): when one campaign (or sender, ...) still too small to
    judge carries the trouble and the rest of the coarser one's mail (`parts`) is under the
    verdicts' levels, the trouble is that finer culprit's. The coarser one reaches `min_sample`
    first because it carries more mail; judging it then would make the verdict depend on how
    finely feedback happens to be batched. The finer culprit's mail is set aside (not live, not
    the pair's rest) until it has enough to be judged."""
    levels = [rules.level_of(v.rule, settings) for v in found]
    whole = Counts()
    for part in parts:
        for counts in live[part].values():
            whole.merge(counts)
    for _dim, index in finer:
        by_value: dict[str, list[str]] = {}
        for part in parts:
            values = part.split("|")
            if len(values) == 4 and values[index]:
                by_value.setdefault(values[index], []).append(part)
        for value_parts in by_value.values():
            own = Counts()
            for part in value_parts:
                for counts in live[part].values():
                    own.merge(counts)
            others = whole.minus(own)
            if all(rules.too_small_to_judge(own, cls, settings) and others.rate(cls) <= level
                   for cls, level in levels):
                for part in value_parts:
                    for s, counts in live.pop(part).items():
                        rest[s] = rest.get(s, Counts()).minus(counts)
                return True
    return False


def _rest_note(rest: Mapping[int, Counts], live: Mapping[str, Mapping[int, Counts]], parts: list[str]) -> str:
    total = Counts()
    for counts in rest.values():
        total.merge(counts)
    for part in parts:
        for counts in live.get(part, {}).values():
            total = total.minus(counts)
    return (f"the rest of the pair: hard bounces {total.hard_bounce} of {total.sent} sent, "
            f"complaints {total.complaint} of {total.delivered} delivered")
