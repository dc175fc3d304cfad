"""The pure policy core: no I/O, an injected clock, state passed in and out.

Modules: settings (what the operator configures), isp (recognition), schedule (volumes, days and
windows), bucket (token buckets and the atomic take), health (classes and counts), state (pair
state), rules (health -> actions), operator (overrides), policy (ties them together).
"""

from policy.engine.model import Action, FeedbackItem, Grant, GrantAsk
from policy.engine.policy import Policy
from policy.engine.settings import PolicySettings
from policy.engine.state import PairKey, PairState

__all__ = ["Action", "FeedbackItem", "Grant", "GrantAsk", "PairKey", "PairState", "Policy", "PolicySettings"]
