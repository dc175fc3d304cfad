"""The modelled ISPs' replies go through the product's classifier and mean what the reference says."""

from __future__ import annotations

import pytest

from policy.engine.health import classify as health_class
from policy.engine.settings import ClassSettings
from policy.sim.isp_defaults import DEFAULT_ISPS
from policy.sim.isp_model import ModelledIsp
from policy.sim.replies import classify, outcome_class, split_reply
from tests.sim.conftest import scenario, small
from warmup_base.configload import ConfigError

ISPS = scenario(small()).isps


EXPECTED = {"accept": ("delivered", "delivered"), "throttle": ("throttled", "throttled"),
            "block": ("blocked", "blocked"), "blocklist": ("blocked", "blocked"),
            "unknown_user": ("hard_bounce", "hard_bounce")}
@pytest.mark.parametrize(("isp", "name"), [
    (isp, name) for isp in sorted(DEFAULT_ISPS) for name in EXPECTED])
def test_each_isps_replies_mean_what_the_policy_must_act_on(isp: str, name: str) -> None:
    """Through bounce_parser's classifier and policyd's own health classes, as the MTA reports them."""
    reply = getattr(ModelledIsp(isp, ISPS[isp]).replies("ip1", "192.0.2.1"), name)
    outcome, health = EXPECTED[name]
    assert reply.outcome == outcome, reply
    assert health_class(reply.outcome, reply.reason, reply.code, reply.status, ClassSettings()) == health, reply
    assert reply.hard == (name == "unknown_user"), reply


def test_the_source_address_is_quoted_in_the_wording() -> None:
    replies = ModelledIsp("microsoft", ISPS["microsoft"]).replies("ip1", "192.0.2.77")
    assert "[192.0.2.77]" in replies.throttle.text
    assert replies.throttle.code == 451 and replies.throttle.status == "4.7.650"


@pytest.mark.parametrize(("line", "parsed"), [
    ("421 4.7.0 [TSS04] Messages deferred", (421, "4.7.0", "[TSS04] Messages deferred")),
    ("554 delivery error: dd This user doesn't have an account", (554, "", "delivery error: dd This user "
                                                                   "doesn't have an account")),
    ("550-5.7.1 blocked", (550, "5.7.1", "blocked")),
])
def test_reply_lines_split_into_code_status_and_text(line: str, parsed: tuple) -> None:
    assert split_reply(line, "k") == parsed


@pytest.mark.parametrize("line", ["", "hello", "99 too short", "700 5.0.0 no such class"])
def test_a_line_that_is_no_reply_names_the_key(line: str) -> None:
    with pytest.raises(ConfigError, match=r"^isps\.x\.block_reply: "):
        split_reply(line, "isps.x.block_reply")


def test_outcome_classes_are_the_mtas() -> None:
    assert outcome_class(250, "delivered") == "delivered"
    assert outcome_class(421, "throttled") == "throttled"
    assert outcome_class(553, "blocked") == "blocked"
    assert outcome_class(550, "hard") == "hard_bounce"
    assert outcome_class(452, "soft") == "soft_bounce"
    full = classify("452 4.2.2 The email account that you tried to reach is over quota", "k")
    assert full.outcome == "soft_bounce" and full.temporary
