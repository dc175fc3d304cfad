"""SMTP replies of the modelled ISPs, classified the way the MTA classifies what it hears.

A reply is written in a scenario as one line, "421 4.7.28 text" (the enhanced status may be left
out). It goes through the product's one classifier, `bounce_parser.classifier.classify_reply`, and
its kind becomes the health class the MTA reports as the feedback's outcome, by the MTA's own
function (`mta.queue.recorder.feedback_class`), so policyd hears from the simulator exactly the
reasons and outcome classes it would hear from the MTA.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bounce_parser.classifier import classify_reply
from warmup_base.configload import ConfigError
from warmup_base.policy_protocol.model import feedback_class

_REPLY = re.compile(r"\s*(\d{3})(?:[ -]+(\d\.\d{1,3}\.\d{1,3}))?\s*(.*)", re.S)
ADDRESS_PLACEHOLDER = "[IP]"   # replaced by the source's address, as the ISPs quote it


@dataclass(frozen=True, slots=True)
class Reply:
    """One reply as the MTA sees it: code, status, text, the taxonomy reason and the outcome class."""

    code: int
    status: str
    text: str
    reason: str
    hard: bool            # the address is suppressed after this reply
    kind: str             # classifier kind: delivered, throttled, blocked, auth, hard, soft
    outcome: str          # the MTA's feedback class: delivered, throttled, blocked, auth, hard_bounce, soft_bounce

    @property
    def temporary(self) -> bool:
        return 400 <= self.code < 500

    @property
    def accepted(self) -> bool:
        return 200 <= self.code < 300


def split_reply(line: str, key: str) -> tuple[int, str, str]:
    """("421 4.7.0 text") -> (421, "4.7.0", "text"); the error names the scenario key."""
    m = _REPLY.fullmatch(line)
    if not m or not 200 <= int(m.group(1)) < 600:
        raise ConfigError(f"{key}: expected an SMTP reply such as \"421 4.7.0 Try again later\", got {line!r}")
    return int(m.group(1)), m.group(2) or "", m.group(3).strip()


def outcome_class(code: int, kind: str) -> str:
    """The outcome class the MTA reports for a reply of this code and classifier kind."""
    return feedback_class(kind, delivered=200 <= code < 300)


def classify(line: str, key: str, address: str = "") -> Reply:
    """Parses and classifies one reply line, with the source's address filled in."""
    code, status, text = split_reply(line.replace(ADDRESS_PLACEHOLDER, f"[{address}]" if address else "[IP]"), key)
    c = classify_reply(code, status, text)
    return Reply(code, status, text, c.reason, c.hard, c.kind, outcome_class(code, c.kind))
