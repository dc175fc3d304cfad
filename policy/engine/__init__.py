"""The pure policy core: no I/O, an injected clock, state passed in and out.

Modules: settings (what the operator configures), isp (recognition), schedule (volumes, days and
windows), bucket (token buckets and the atomic take), health (classes and counts), state (pair
state), rules (health -> actions), operator (overrides), policy (ties them together).
"""

from policy.engine.model import Action
from policy.engine.policy import Policy
from policy.engine.settings import PolicySettings
from policy.engine.state import PairKey, PairState
from warmup_base.policy_protocol.model import Grant, GrantRequest, Outcome

__all__ = ["Action", "Grant", "GrantRequest", "Outcome", "PairKey", "PairState", "Policy", "PolicySettings"]
