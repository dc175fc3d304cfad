"""One-click unsubscribe tokens and headers (pure: an injected clock, no I/O)."""

from __future__ import annotations

import pytest

from mta.compliance.unsubscribe import (
    InvalidToken,
    UnsubscribeConfig,
    UnsubscribeInfo,
    UnsubscribeTokens,
    has_list_unsubscribe,
    list_unsubscribe_headers,
    mailto_address,
    one_click_recipient,
    token_from_address,
    validate_unsubscribe_config,
)
from warmup_base.configload import ConfigError, build

DAY = 86400.0
T0 = 1_795_500_000.0


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def issue(tokens: UnsubscribeTokens, recipient: str = "Alice@Example.net") -> str:
    return tokens.issue(recipient=recipient, tenant="acme", sending_domain="News.Example.com", queue_id="Q123")


def test_valid_token_gives_back_what_was_put_in():
    tokens = UnsubscribeTokens([b"k1"], clock=Clock())
    token = issue(tokens)
    assert tokens.verify(token) == UnsubscribeInfo("Alice@Example.net", "acme", "news.example.com", "Q123", int(T0))


def test_token_is_url_and_local_part_safe_and_case_insensitive():
    tokens = UnsubscribeTokens([b"k1"], clock=Clock())
    token = issue(tokens, "josé+tag@exämple.net")
    assert token.isalnum() and token == token.lower()
    assert tokens.verify(token.upper()).recipient == "josé+tag@exämple.net"


@pytest.mark.parametrize("position", [0, 5, 20, -1])
def test_tampered_token_is_rejected(position):
    tokens = UnsubscribeTokens([b"k1"], clock=Clock())
    token = issue(tokens)
    flipped = "a" if token[position] != "a" else "b"
    tampered = token[:position] + flipped + (token[position + 1:] if position != -1 else "")
    with pytest.raises(InvalidToken, match=r"bad signature|malformed"):
        tokens.verify(tampered)


def test_token_for_another_recipient_cannot_be_made_by_swapping_fields():
    tokens = UnsubscribeTokens([b"k1"], clock=Clock())
    mine, other = issue(tokens, "a@example.net"), issue(tokens, "b@example.net")
    assert mine != other
    spliced = mine[:-20] + other[-20:]         # mine's content, other's MAC
    with pytest.raises(InvalidToken):
        tokens.verify(spliced)


@pytest.mark.parametrize("garbage", ["", "!!!", "a" * 2000, "abc", "0189", "a" * 8])
def test_garbage_is_malformed(garbage):
    with pytest.raises(InvalidToken, match="malformed"):
        UnsubscribeTokens([b"k1"]).verify(garbage)


def test_token_expires_after_max_age():
    clock = Clock()
    tokens = UnsubscribeTokens([b"k1"], max_age=90 * DAY, clock=clock)
    token = issue(tokens)
    clock.now = T0 + 89 * DAY
    assert tokens.verify(token).recipient == "Alice@Example.net"
    clock.now = T0 + 91 * DAY
    with pytest.raises(InvalidToken, match="expired"):
        tokens.verify(token)


def test_token_from_the_future_is_rejected_beyond_clock_skew():
    clock = Clock(T0 + 3600)
    token = issue(UnsubscribeTokens([b"k1"], clock=clock))
    clock.now = T0
    with pytest.raises(InvalidToken, match="future"):
        UnsubscribeTokens([b"k1"], clock=clock).verify(token)


def test_key_rotation_old_tokens_still_verify_new_ones_use_the_new_key():
    clock = Clock()
    old_token = issue(UnsubscribeTokens([b"old"], clock=clock))
    rotated = UnsubscribeTokens([b"new", b"old"], clock=clock)
    assert rotated.verify(old_token).queue_id == "Q123"
    new_token = issue(rotated)
    with pytest.raises(InvalidToken, match="bad signature"):
        UnsubscribeTokens([b"old"], clock=clock).verify(new_token)
    with pytest.raises(InvalidToken, match="bad signature"):
        UnsubscribeTokens([b"other"], clock=clock).verify(old_token)


def test_fields_over_255_bytes_cannot_be_issued():
    with pytest.raises(ValueError, match="recipient is too long"):
        issue(UnsubscribeTokens([b"k"]), "x" * 250 + "@example.net")


def test_empty_key_is_refused():
    with pytest.raises(ValueError):
        UnsubscribeTokens([b""])


# -- addresses and headers --------------------------------------------------------------------------

def test_mailto_address_round_trip_ignores_case():
    address = mailto_address("abc234", "Bounces.Example.com")
    assert address == "unsub-abc234@Bounces.Example.com"
    assert token_from_address("<UNSUB-ABC234@bounces.example.com>", "bounces.example.com") == "abc234"
    assert token_from_address("unsub-abc234@elsewhere.example", "bounces.example.com") is None
    assert token_from_address("b-q1-mac@bounces.example.com", "bounces.example.com") is None
    assert token_from_address("unsub-@bounces.example.com", "bounces.example.com") is None


def test_headers_carry_https_and_mailto_with_the_same_valid_token():
    tokens = UnsubscribeTokens([b"k1"], clock=Clock())
    headers = list_unsubscribe_headers(tokens, recipient="alice@example.net", tenant="acme",
                                       sending_domain="example.com", queue_id="Q1",
                                       https_base="https://unsub.example.com/", mailto_domain="bounces.example.com")
    text = headers.decode()
    assert text.endswith("\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n")
    first_line = text.split("\r\n")[0]
    assert first_line.startswith("List-Unsubscribe: <https://unsub.example.com/u/")
    https_token = first_line.split("/u/")[1].split(">")[0]
    mailto = text.split("<mailto:")[1].split(">")[0]
    assert token_from_address(mailto, "bounces.example.com") == https_token
    assert tokens.verify(https_token).recipient == "alice@example.net"
    assert all(len(line) <= 998 for line in text.split("\r\n"))
    assert has_list_unsubscribe(b"From: a@b.c\r\n" + headers)


def test_mailto_only_headers_have_no_one_click_post():
    headers = list_unsubscribe_headers(UnsubscribeTokens([b"k"]), recipient="a@example.net", tenant="",
                                       sending_domain="example.com", queue_id="Q1",
                                       mailto_domain="bounces.example.com")
    assert headers.startswith(b"List-Unsubscribe: <mailto:unsub-") and b"Post" not in headers


def test_only_a_single_recipient_message_gets_headers():
    assert one_click_recipient(["a@example.net"]) == "a@example.net"
    assert one_click_recipient(["a@example.net", "b@example.net"]) is None
    assert one_click_recipient([]) is None


def test_app_supplied_list_unsubscribe_is_detected():
    assert has_list_unsubscribe(b"Subject: x\r\nlist-unsubscribe : <mailto:x@y>\r\n")
    assert not has_list_unsubscribe(b"Subject: List-Unsubscribe: not a header\r\nX-List-Unsubscribe: x\r\n")


# -- config -----------------------------------------------------------------------------------------

def test_config_builds_with_defaults_and_durations():
    section = build(UnsubscribeConfig, {"enabled": True, "https_base": "https://u.example.com",
                                        "token_max_age": "30d", "secret": "s"}, "unsubscribe")
    validate_unsubscribe_config(section)
    assert section.streams == ["marketing"] and section.token_max_age == 30 * DAY
    assert section.keys() == [b"s"]
    assert UnsubscribeConfig(previous_secrets=["old"]).keys(fallback=b"verp") == [b"verp", b"old"]


@pytest.mark.parametrize("table, error", [
    ({"https_base": "http://u.example.com"}, r"unsubscribe\.https_base: must be an https:// URL"),
    ({"https_base": "u.example.com"}, r"unsubscribe\.https_base: expected a URL"),
    ({"listen": "8080"}, r"unsubscribe\.listen: expected host:port"),
    ({"tls_cert": "c.pem"}, r"unsubscribe\.tls_cert / unsubscribe\.tls_key"),
    ({"token_max_age": 0}, r"unsubscribe\.token_max_age: must be positive"),
    ({"previous_secrets": [""]}, r"unsubscribe\.previous_secrets\[0\]"),
])
def test_config_errors_name_the_bad_key(table, error):
    with pytest.raises(ConfigError, match=error):
        validate_unsubscribe_config(build(UnsubscribeConfig, table, "unsubscribe"))


def test_plain_http_base_is_allowed_on_loopback_for_trials():
    validate_unsubscribe_config(UnsubscribeConfig(https_base="http://127.0.0.1:8025"))
