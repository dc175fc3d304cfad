"""A/B variants of a template batch: which recipient gets which variant.

A batch (`POST /v1/messages/batch` with a template and recipients) may carry `variants`, each a
name and the template fields it changes (subject, text, html), and a `split` of weights. Every
recipient gets exactly one variant. The assignment is deterministic for the batch's campaign id
and honours the split exactly (up to rounding): recipients are ordered by a hash of the campaign id
and their address (a fair shuffle no client can steer by ordering its list), and the first
`share` of that order goes to the first variant, and so on. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mta.http.api.errors import invalid

MAX_VARIANTS = 10
VARIANT_FIELDS = {"name", "subject", "text", "html"}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
BATCH_FIELDS = {"variants", "split", "winner_after"}     # batch-level fields, not message fields


@dataclass(frozen=True, slots=True)
class Variant:
    name: str
    template: dict[str, str]      # the template fields this variant sets (over the batch's template)
    weight: float


def new_campaign_id() -> str:
    return "ab-" + secrets.token_hex(6)


def campaign_id_from(seed: str) -> str:
    """A campaign id that a repeat of the same request gets again (from its Idempotency-Key)."""
    return "ab-" + hashlib.sha256(seed.encode()).hexdigest()[:12]


def parse_variants(data: dict[str, Any]) -> list[Variant]:
    """The batch's `variants` and `split` (ApiError 422 naming the field on a problem)."""
    raw = data.get("variants")
    if not isinstance(raw, list) or not 2 <= len(raw) <= MAX_VARIANTS:
        raise invalid("variants", f"a list of 2 to {MAX_VARIANTS} variants")
    names: list[str] = []
    templates: list[dict[str, str]] = []
    for i, v in enumerate(raw):
        where = f"variants[{i}]"
        if not isinstance(v, dict) or set(v) - VARIANT_FIELDS:
            raise invalid(where, "a variant is {name, subject?, text?, html?}")
        name = v.get("name")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise invalid(where + ".name", "1 to 64 letters, digits, '_', '.' or '-'")
        if name in names:
            raise invalid(where + ".name", f"variant {name!r} is named twice")
        for key in ("subject", "text", "html"):
            if key in v and (not isinstance(v[key], str) or "\x00" in v[key]):
                raise invalid(f"{where}.{key}", "must be a string")
        names.append(name)
        templates.append({k: v[k] for k in ("subject", "text", "html") if k in v})
    weights = _split(data.get("split"), names)
    return [Variant(n, t, w) for n, t, w in zip(names, templates, weights, strict=True)]


def _split(value: Any, names: list[str]) -> list[float]:
    """Weights (or percentages: the same thing), as a list in variant order or an object by name;
    none given = equal shares."""
    if value is None:
        return [1.0] * len(names)
    if isinstance(value, dict):
        if set(value) != set(names):
            raise invalid("split", "name every variant once: {\"A\": 50, \"B\": 50}")
        value = [value[n] for n in names]
    if not isinstance(value, list) or len(value) != len(names):
        raise invalid("split", "one weight per variant, in the order of variants")
    out = []
    for i, w in enumerate(value):
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 <= w <= 1e6 or w != w:
            raise invalid(f"split[{i}]", "a weight is a number from 0 to 1000000")
        out.append(float(w))
    if sum(out) <= 0:
        raise invalid("split", "at least one weight must be above 0")
    return out


def shares(weights: Sequence[float], n: int) -> list[int]:
    """How many of `n` recipients each weight gets: largest remainder, so they add up to n."""
    total = sum(weights)
    exact = [w * n / total for w in weights]
    counts = [int(e) for e in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in by_remainder[:n - sum(counts)]:
        counts[i] += 1
    return counts


def _rank(campaign: str, address: str) -> bytes:
    return hashlib.sha256(f"{campaign}\x00{address.strip().lower()}".encode()).digest()


def assign(campaign: str, addresses: Sequence[str], variants: Sequence[Variant]) -> list[int]:
    """The variant index of each address (in the order given)."""
    order = sorted(range(len(addresses)), key=lambda i: (_rank(campaign, addresses[i]), i))
    out = [0] * len(addresses)
    position = 0
    for v, count in enumerate(shares([x.weight for x in variants], len(addresses))):
        for i in order[position:position + count]:
            out[i] = v
        position += count
    return out
