"""The wire format on its own (sans-IO): encoding, decoding, and errors that name the field."""

from __future__ import annotations

import json

import pytest

from warmup_base.policy_protocol import wire as protocol
from warmup_base.policy_protocol.model import Grant, GrantRequest, Outcome

ASK = GrantRequest("gmail.com", ("gmail-smtp-in.l.google.com",), "default", ("ip1", "ip2"), "marketing",
               "example.test", "t1", 25, mailbox="sam@example.test")
OUT = Outcome("gmail.com", ("gmail-smtp-in.l.google.com",), "ip1", "example.test", "t1", "marketing",
                   "deferred", "toomanyconn", 421, "4.7.28", 12)


def test_grant_requests_round_trip() -> None:
    request = protocol.decode_request(protocol.grant_message(7, [ASK, ASK]))
    assert (request.msg_id, request.op, request.asks) == (7, "grant", (ASK, ASK))


def test_feedback_round_trips_and_mailbox_is_optional() -> None:
    line = protocol.feedback_message("f1", [OUT])
    assert b"mailbox" not in line
    request = protocol.decode_request(line)
    assert (request.msg_id, request.outcomes) == ("f1", (OUT,))


def test_grant_replies_round_trip_with_relative_times() -> None:
    grants = [[Grant("ip1", 5, 2, 50, 30.0)], [Grant("ip1", 0, 5, 100, 30.0, retry_in=12.5)]]
    reply = protocol.decode_reply(protocol.grant_reply(3, grants))
    assert reply.ok and reply.msg_id == 3
    assert protocol.decode_grants(reply, 2) == grants


def test_every_line_is_one_json_object_with_a_version() -> None:
    line = protocol.grant_message(1, [ASK])
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line)["v"] == protocol.VERSION


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    body = json.loads(protocol.grant_message(1, [ASK]))
    body["priority"] = "high"
    body["requests"][0]["future_field"] = [1, 2]
    assert protocol.decode_request(json.dumps(body).encode()).asks == (ASK,)


def _error(body: object) -> protocol.ProtocolError:
    with pytest.raises(protocol.ProtocolError) as info:
        protocol.decode_request(json.dumps(body).encode() if not isinstance(body, bytes) else body)
    return info.value


@pytest.mark.parametrize(("body", "code", "names"), [
    (b"{not json", "bad_json", "not a JSON object"),
    (b"\xff\xfe", "bad_json", "not a JSON object"),
    ([1, 2], "bad_json", "not a JSON object"),
    ({"id": 1, "op": "ping"}, "unsupported_version", "v:"),
    ({"v": 99, "id": 1, "op": "ping"}, "unsupported_version", "99"),
    ({"v": 1, "op": "ping"}, "bad_request", "id:"),
    ({"v": 1, "id": 1, "op": "launch"}, "unknown_op", "launch"),
    ({"v": 1, "id": 1, "op": "grant"}, "bad_request", "requests: expected a list"),
    ({"v": 1, "id": 1, "op": "grant", "requests": [5]}, "bad_request", "requests[0]: expected an object"),
    ({"v": 1, "id": 1, "op": "grant", "requests": [{"site": "s", "wanted": -1}]}, "bad_request",
     "requests[0].wanted"),
    ({"v": 1, "id": 1, "op": "grant", "requests": [{"site": "s", "wanted": 1, "sources": "ip1"}]},
     "bad_request", "requests[0].sources"),
    ({"v": 1, "id": 1, "op": "feedback", "outcomes": [{"source": "ip1"}]}, "bad_request", "outcomes[0].outcome"),
    ({"v": 1, "id": 1, "op": "feedback", "outcomes": [{"source": "ip1", "outcome": "x", "count": True}]},
     "bad_request", "outcomes[0].count"),
])
def test_malformed_requests_are_refused_with_the_field_named(body: object, code: str, names: str) -> None:
    error = _error(body)
    assert error.code == code and names in str(error)


def test_an_error_keeps_the_request_id_when_it_could_be_read() -> None:
    assert _error({"v": 1, "id": "abc", "op": "nope"}).msg_id == "abc"
    assert _error({"v": 1, "id": [1], "op": "ping"}).msg_id is None


def test_batches_are_bounded() -> None:
    body = {"v": 1, "id": 1, "op": "feedback", "outcomes": [{}] * (protocol.MAX_ITEMS + 1)}
    assert "at most" in str(_error(body))


def test_error_replies_decode() -> None:
    reply = protocol.decode_reply(protocol.error_reply(4, "bad_request", "requests[0].wanted: no"))
    assert (reply.ok, reply.msg_id, reply.error_code) == (False, 4, "bad_request")
