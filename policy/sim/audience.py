"""The recipients: who is at which ISP, how engaged, which addresses are invalid, who complains.

Pure and seeded: the same settings and seed give the same people. Engagement scores follow a Beta
distribution; invalid addresses never engaged (score 0), and neither did a share of the valid ones,
so the planner cannot tell them apart (ties are broken at random); complainers are drawn more often among
the less engaged, which is why sending to the most engaged first keeps a young IP's complaint
and bounce rates low. The planner's order of the audience lives here too, because it is a
property of the people (who is worth mailing first), recomputed only when the list changes.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Mapping, Sequence

from policy.sim.scenario import AudienceSettings


class Audience:
    def __init__(self, isp_names: Sequence[str]) -> None:
        self.isp_names = list(isp_names)
        self.isp: list[int] = []            # index into isp_names
        self.engagement: list[float] = []
        self.invalid = bytearray()
        self.complainer = bytearray()
        self.suppressed = bytearray()       # hard-bounced or unsubscribed after a complaint
        self._rank: list[float] = []        # planner key: larger goes first
        self._order: list[int] | None = None

    def __len__(self) -> int:
        return len(self.isp)

    @classmethod
    def generate(cls, settings: AudienceSettings, isp_names: Sequence[str], rng: random.Random) -> Audience:
        audience = cls(isp_names)
        audience.add(settings.size, settings.isp_mix, settings.engagement_mean, settings.engagement_concentration,
                     settings.invalid_share, settings.inactive_share, settings.complainer_share, settings.order, rng)
        return audience

    def add(self, count: int, isp_mix: Mapping[str, float], engagement_mean: float, concentration: float,
            invalid_share: float, inactive_share: float, complainer_share: float, order: str,
            rng: random.Random) -> range:
        """Appends `count` recipients; returns their ids."""
        names = [n for n in isp_mix if isp_mix[n] > 0]
        cumulative = list(itertools.accumulate(isp_mix[n] for n in names))
        index = {n: self.isp_names.index(n) for n in names}
        alpha, beta = engagement_mean * concentration, (1 - engagement_mean) * concentration
        # Complainers come from the less engaged: P(complainer | e) grows with (1 - e), mean = share.
        complainer_scale = complainer_share / (1 - engagement_mean)
        first = len(self.isp)
        for _ in range(count):
            isp = names[bisect.bisect_left(cumulative, rng.random() * cumulative[-1])]
            invalid = rng.random() < invalid_share
            inactive = invalid or rng.random() < inactive_share
            engagement = 0.0 if inactive else rng.betavariate(alpha, beta)
            complains = not invalid and rng.random() < complainer_scale * (1 - engagement)
            self.isp.append(index[isp])
            self.engagement.append(engagement)
            self.invalid.append(invalid)
            self.complainer.append(complains)
            self.suppressed.append(False)
            # The engagement order breaks ties at random: nobody knows which never-openers are invalid.
            self._rank.append(engagement + rng.random() * 1e-9 if order == "engagement" else rng.random())
        self._order = None
        return range(first, len(self.isp))

    def planned_order(self) -> list[int]:
        """Every recipient not suppressed, the ones to mail first first."""
        if self._order is None:
            self._order = sorted(range(len(self.isp)), key=self._rank.__getitem__, reverse=True)
        suppressed = self.suppressed
        return [i for i in self._order if not suppressed[i]]

    def order_of(self, ids: Sequence[int]) -> list[int]:
        """`ids` in the planner's order."""
        return sorted(ids, key=self._rank.__getitem__, reverse=True)

    def active_count(self) -> int:
        return len(self.suppressed) - sum(self.suppressed)


class ActiveUserSampler:
    """Draws recipients of transactional mail: active users, in proportion to their engagement."""

    def __init__(self, audience: Audience, rng: random.Random) -> None:
        self._audience = audience
        self._ids = [i for i in range(len(audience)) if not audience.invalid[i]]
        self._cumulative = list(itertools.accumulate(audience.engagement[i] + 0.01 for i in self._ids))
        self._rng = rng

    def draw(self, count: int) -> list[int]:
        if count <= 0 or not self._ids:
            return []
        suppressed = self._audience.suppressed
        picked = self._rng.choices(self._ids, cum_weights=self._cumulative, k=count)
        return [i for i in picked if not suppressed[i]]
