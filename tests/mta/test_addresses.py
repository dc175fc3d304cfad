"""Envelope address checks: forms that could route or could not be stored are refused."""

from __future__ import annotations

import pytest

from mta.submission.addresses import check_recipient, check_sender


@pytest.mark.parametrize("address", ["\udcff@example.com", "ab\udc80c@example.com"])
def test_an_smtputf8_local_part_that_is_not_utf8_is_refused(address: str) -> None:
    # Bytes the listener could not decode arrive as surrogate escapes; such an address could not
    # be encoded for the spool, the event log or the policy protocol later.
    for problem in (check_recipient(address, True), check_sender(address, True)):
        assert problem is not None and problem.code == 553
    assert check_recipient(address, True).status == "5.6.7"


def test_a_real_utf8_local_part_is_accepted_with_smtputf8() -> None:
    assert check_recipient("jürgen@example.com", True) is None
    assert check_recipient("jürgen@example.com", False) is not None
