"""The API's pure parts: request checking, MIME composition, templates, recipient state."""

from __future__ import annotations

import email
import email.policy

import pytest

from mta.http.api.compose import compose, rendered_plain
from mta.http.api.errors import ApiError
from mta.http.api.request import Limits, parse_message, parse_send_at
from mta.http.api.status import recipient_states
from mta.http.api.templates import render

LIMITS = Limits(frozenset({"transactional", "marketing"}), 3, 30 * 86400.0)
NOW = 1_700_000_000.0


def test_recipients_are_to_cc_bcc_once_each_and_bcc_stays_off_the_headers():
    req = parse_message({"from": {"email": "a@s.example", "name": "Shop, Inc."}, "to": ["x@d.example"],
                         "cc": "X@d.example", "bcc": "y@d.example", "text": "hi"}, NOW, LIMITS)
    assert req.recipients == ["x@d.example", "y@d.example"]
    raw = compose(req, rendered_plain(req))
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["From"] == '"Shop, Inc." <a@s.example>' and "y@d.example" not in raw.decode()


def test_too_many_recipients_and_non_utf8_unsafe_values_are_refused():
    with pytest.raises(ApiError) as err:
        parse_message({"from": "a@s.example", "to": [f"u{i}@d.example" for i in range(4)], "text": "x"},
                      NOW, LIMITS)
    assert err.value.status == 422 and err.value.field == "to"
    with pytest.raises(ApiError) as err:
        parse_message({"from": "a@s.example", "to": "u@d.example", "subject": "a\r\nBcc: x@y", "text": "x"},
                      NOW, LIMITS)
    assert err.value.field == "subject"


def test_send_at_must_be_rfc3339_with_zone_and_within_the_window():
    assert parse_send_at("2023-11-14T22:13:20Z", NOW - 10, 86400, "send_at") == NOW
    assert parse_send_at("2023-11-14T23:13:20+01:00", NOW - 10, 86400, "send_at") == NOW
    assert parse_send_at("2020-01-01T00:00:00Z", NOW, 86400, "send_at") == 0.0     # past: now
    for bad in ("2023-11-14T22:13:20", "tomorrow", 5, "2023-11-20T00:00:00Z"):
        with pytest.raises(ApiError):
            parse_send_at(bad, NOW, 86400, "send_at")


def test_template_html_is_escaped_text_is_not_and_subject_is_one_line():
    out = render({"subject": "Hi {{ n }}", "text": "{{ n }}", "html": "<i>{{ n }}</i>"}, {"n": "<a>\r\nB"})
    assert out.subject == "Hi <a> B" and out.text == "<a>\r\nB" and out.html == "<i>&lt;a&gt;\r\nB</i>"


def test_a_non_ascii_address_makes_an_smtputf8_message():
    req = parse_message({"from": "app@s.example", "to": "josé@d.example", "subject": "Olá", "text": "é"},
                        NOW, LIMITS)
    assert req.smtputf8
    assert "josé@d.example".encode() in compose(req, rendered_plain(req))


def test_recipient_state_follows_its_events():
    events = [{"event": "accepted", "recipient": "a"}, {"event": "scheduled", "recipient": "a"},
              {"event": "accepted", "recipient": "b"}, {"event": "deferred", "recipient": "b"},
              {"event": "delivered", "recipient": "b"}, {"event": "opened", "recipient": "b"},
              {"event": "accepted", "recipient": "c"}, {"event": "dropped", "recipient": "c", "reason": "complaint"},
              {"event": "accepted", "recipient": "d"}, {"event": "cancelled", "recipient": "d"},
              {"event": "deferred", "recipient": "d"}]
    states = recipient_states(events, send_at=NOW + 60, now=NOW)
    assert {k: v["state"] for k, v in states.items()} == {"a": "scheduled", "b": "delivered", "c": "suppressed",
                                                          "d": "cancelled"}
    assert recipient_states(events, send_at=NOW + 60, now=NOW + 61)["a"]["state"] == "queued"


@pytest.mark.parametrize("table, key", [({"listen": "nowhere"}, "api.listen"), ({"max_body": 0}, "api.max_body"),
                                        ({"listen": "127.0.0.1:8080", "unknown": 1}, "api.unknown")])
def test_a_bad_api_section_is_named_at_start_up(tmp_path, table, key):
    from mta.config import ConfigError, load_config
    from tests.support.tomlw import dumps

    path = tmp_path / "mta.toml"
    path.write_text(dumps({"mta": {"hostname": "h.example", "spool_dir": str(tmp_path)}, "api": table}))
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(str(path))


@pytest.mark.parametrize(("source", "words"), [
    ("{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}x", "ran longer than"),
    ("{% for a in range(100000) %}{{ 'y' * 100 }}{% endfor %}", "over 5242880 characters"),
    ("{{ 'x' * 1000000000 }}", "repetition"),
    ("{{ [1] * 100000000 }}", "repetition"),
    ("{{ n ** 99999999 }}", "power"),
    ("{{" + "(" * 5000 + "1" + ")" * 5000 + "}}", "nests too deeply"),
])
def test_a_template_that_would_cost_too_much_is_a_422_not_a_stalled_daemon(source, words):
    with pytest.raises(ApiError) as caught:
        render({"subject": "s", "html": source}, {"n": 9})
    assert caught.value.status == 422 and words in caught.value.body()["error"]["message"]
    assert caught.value.body()["error"]["field"] == "template.html"


def test_ordinary_arithmetic_and_repetition_still_render():
    assert render({"subject": "{{ 2 ** 10 }} {{ '-' * 3 }}"}, {}).subject == "1024 ---"
