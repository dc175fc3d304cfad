"""The one reason taxonomy of the product, and the hard/soft rule.

Every classified outcome - a parsed bounce, a synchronous SMTP reply, an event, a metric label,
a policy rule - names its cause with one of ``REASONS``.  Finer classes that the warm-up rules
need (a rate limit is a kind of ``toomanyconn``) live in ``FINER_REASONS`` and always map back
to exactly one coarse name, so nothing downstream has to know them.
"""

from __future__ import annotations

REASONS: tuple[str, ...] = (
    "userunknown",
    "hostunknown",
    "hasmoved",
    "suspend",
    "mailboxfull",
    "mesgtoobig",
    "exceedlimit",
    "filtered",
    "rejected",
    "blocked",
    "spamdetected",
    "virusdetected",
    "policyviolation",
    "securityerror",
    "contenterror",
    "syntaxerror",
    "notaccept",
    "norelaying",
    "toomanyconn",
    "systemerror",
    "systemfull",
    "networkerror",
    "mailererror",
    "expired",
    "onhold",
    "vacation",
    "delivered",
    "feedback",
    "undefined",
)

# Finer names (those of newer bounce parsers) -> the coarse reason they belong to.
FINER_REASONS: dict[str, str] = {
    "speeding": "toomanyconn",
    "authfailure": "securityerror",
    "badreputation": "blocked",
    "requireptr": "blocked",
    "notcompliantrfc": "contenterror",
}

# Reasons that say the address itself is gone: these suppress it.
HARD_REASONS: frozenset[str] = frozenset({"userunknown", "hostunknown", "hasmoved"})

# Reasons that are not failures at all, so neither hard nor soft.
NOT_A_FAILURE: frozenset[str] = frozenset({"feedback", "vacation", "delivered"})


def coarse_reason(name: str) -> str:
    """Map a finer class or a reason to its coarse taxonomy name ("undefined" if unknown)."""
    name = name.strip().lower()
    if name in FINER_REASONS:
        return FINER_REASONS[name]
    return name if name in REASONS else "undefined"


def is_hard(reason: str, status: str = "") -> bool:
    """True when the outcome must suppress the address (the README's rule).

    ``notaccept`` (null MX, host refuses all mail) is only final for a permanent (5.x.x) status;
    everything else that is not an address-level reason is soft, whatever its code class, because
    a 5.x.x ``blocked`` speaks about the sending IP, not about the recipient.
    """
    reason = coarse_reason(reason)
    if reason in HARD_REASONS:
        return True
    return reason == "notaccept" and status.strip().startswith("5")


def softness(reason: str, status: str = "") -> str:
    """``"hard"``, ``"soft"`` or ``""`` (for feedback, vacation and delivered), as in the labels."""
    if coarse_reason(reason) in NOT_A_FAILURE:
        return ""
    return "hard" if is_hard(reason, status) else "soft"
