"""Tracking tokens: round trip, tampering, rotation, expiry."""

from __future__ import annotations

import base64

import pytest

from mta.tracking.tokens import CLICK, OPEN, InvalidTrackingToken, TrackingTokens


class Clock:
    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_click_token_round_trip_carries_everything() -> None:
    tokens = TrackingTokens([b"k1"], clock=Clock())
    token = tokens.issue(CLICK, queue_id="Q1", recipient="Ann@Example.test", tenant="acme", campaign="spring",
                         variant="b", url="https://shop.example/x?a=1&b=2#top")
    info = tokens.verify(token)
    assert (info.kind, info.queue_id, info.recipient, info.tenant, info.campaign, info.variant, info.url) == (
        "c", "Q1", "Ann@Example.test", "acme", "spring", "b", "https://shop.example/x?a=1&b=2#top")
    assert info.issued_at == 1_800_000_000
    assert all(c.isalnum() or c in "-_" for c in token)      # safe in a URL path as is


def test_open_token_has_no_url() -> None:
    tokens = TrackingTokens([b"k1"], clock=Clock())
    info = tokens.verify(tokens.issue(OPEN, queue_id="Q", recipient="a@b.test"))
    assert info.kind == "o" and info.url == ""


@pytest.mark.parametrize("position", [0, 5, 10, 20, -3, -1])
def test_any_changed_byte_is_refused(position: int) -> None:
    tokens = TrackingTokens([b"k1"], clock=Clock())
    token = tokens.issue(CLICK, queue_id="Q1", recipient="a@b.test", url="https://x.example/")
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[position] ^= 0x01
    forged = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    with pytest.raises(InvalidTrackingToken):
        tokens.verify(forged)


def test_a_url_swapped_into_a_valid_token_is_refused() -> None:
    """The open-redirect attack: keep the MAC, change the target."""
    tokens = TrackingTokens([b"k1"], clock=Clock())
    good = tokens.issue(CLICK, queue_id="Q", recipient="a@b.test", url="https://shop.example/")
    evil = tokens.issue(CLICK, queue_id="Q", recipient="a@b.test", url="https://evil.example/")
    mixed = good[:-16] + evil[-16:]
    with pytest.raises(InvalidTrackingToken):
        tokens.verify(mixed)


@pytest.mark.parametrize("junk", ["", "!!!", "a" * 9000, "AAAA", "abc=", "%00", "é"])
def test_junk_is_refused_not_crashed(junk: str) -> None:
    with pytest.raises(InvalidTrackingToken):
        TrackingTokens([b"k1"]).verify(junk)


def test_rotation_old_key_verifies_new_key_signs() -> None:
    clock = Clock()
    old = TrackingTokens([b"old"], clock=clock)
    token = old.issue(OPEN, queue_id="Q", recipient="a@b.test")
    rotated = TrackingTokens([b"new", b"old"], clock=clock)
    assert rotated.verify(token).queue_id == "Q"
    with pytest.raises(InvalidTrackingToken):
        TrackingTokens([b"other"], clock=clock).verify(token)


def test_max_age_bounds_tokens_when_set() -> None:
    clock = Clock()
    tokens = TrackingTokens([b"k"], max_age=86400, clock=clock)
    token = tokens.issue(OPEN, queue_id="Q", recipient="a@b.test")
    clock.t += 86401
    with pytest.raises(InvalidTrackingToken):
        tokens.verify(token)
    assert TrackingTokens([b"k"], clock=clock).verify(token).queue_id == "Q"   # no bound by default


def test_too_long_url_is_a_value_error_for_the_caller() -> None:
    with pytest.raises(ValueError):
        TrackingTokens([b"k"]).issue(CLICK, queue_id="Q", recipient="a@b.test", url="https://x/" + "a" * 5000)
