"""The taxonomy and the README's hard/soft rule."""

from __future__ import annotations

import pytest

from bounce_parser import FINER_REASONS, HARD_REASONS, REASONS, coarse_reason, is_hard, softness


def test_taxonomy_is_the_readme_list():
    assert len(REASONS) == len(set(REASONS)) == 29
    assert {"userunknown", "toomanyconn", "feedback", "undefined"} <= set(REASONS)


def test_every_finer_name_maps_to_a_coarse_reason():
    for finer, coarse in FINER_REASONS.items():
        assert finer not in REASONS
        assert coarse in REASONS
        assert coarse_reason(finer) == coarse


@pytest.mark.parametrize("reason", sorted(HARD_REASONS))
def test_address_level_reasons_are_hard_whatever_the_class(reason):
    assert is_hard(reason, "5.1.1") and is_hard(reason, "4.0.0") and is_hard(reason)


def test_notaccept_is_hard_only_when_permanent():
    assert is_hard("notaccept", "5.1.10") is True
    assert is_hard("notaccept", "4.3.2") is False
    assert is_hard("notaccept", "") is False


@pytest.mark.parametrize("reason", ["blocked", "mailboxfull", "filtered", "toomanyconn", "securityerror"])
def test_other_failures_are_soft_even_when_permanent(reason):
    assert is_hard(reason, "5.7.1") is False
    assert softness(reason, "5.7.1") == "soft"


@pytest.mark.parametrize("reason", ["feedback", "vacation", "delivered"])
def test_non_failures_are_neither_hard_nor_soft(reason):
    assert softness(reason) == ""
    assert is_hard(reason, "5.0.0") is False


def test_unknown_names_become_undefined():
    assert coarse_reason("no-such-reason") == "undefined"
    assert coarse_reason(" UserUnknown ") == "userunknown"
