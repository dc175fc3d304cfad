"""Standard Webhooks signatures: the spec project's own test vector, and values computed here from
the spec's definition (HMAC-SHA256 over "id.timestamp.body" with the decoded secret)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
from pathlib import Path
from typing import Any

import pytest

from mta.webhooks.signing import InvalidSecret, parse_secret, sign, signed_headers, verify

# The vector of the Standard Webhooks reference libraries (libraries/python/tests/test_webhooks.py,
# test_sign_function): secret, id, timestamp and payload, and the signature they must give.
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = 1614265330
VECTOR_PAYLOAD = b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_signature_matches_the_spec_projects_test_vector() -> None:
    key = parse_secret(VECTOR_SECRET)
    assert sign(key, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_PAYLOAD) == VECTOR_SIGNATURE


def test_signature_is_hmac_sha256_of_id_timestamp_body_with_the_decoded_secret() -> None:
    raw = os.urandom(40)
    body = '{"events":[{"event":"delivered","recipient":"ü@example.test"}]}'.encode()
    expected = base64.b64encode(hmac.new(raw, b"msg_abc.1700000000." + body, hashlib.sha256).digest()).decode()
    headers = signed_headers(parse_secret("whsec_" + base64.b64encode(raw).decode()), "msg_abc", 1700000000, body)
    assert headers == {"webhook-id": "msg_abc", "webhook-timestamp": "1700000000",
                       "webhook-signature": "v1," + expected}


def test_verify_accepts_a_good_signature_among_several_and_rejects_tampering() -> None:
    key = parse_secret(VECTOR_SECRET)
    headers = signed_headers(key, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_PAYLOAD)
    rotated = dict(headers, **{"webhook-signature": "v1,AAAA " + headers["webhook-signature"]})
    assert verify(key, rotated, VECTOR_PAYLOAD, now=VECTOR_TIMESTAMP + 10)
    assert not verify(key, headers, VECTOR_PAYLOAD + b" ", now=VECTOR_TIMESTAMP)
    assert not verify(key, dict(headers, **{"webhook-id": "msg_other"}), VECTOR_PAYLOAD, now=VECTOR_TIMESTAMP)
    assert not verify(os.urandom(24), headers, VECTOR_PAYLOAD, now=VECTOR_TIMESTAMP)
    assert not verify(key, headers, VECTOR_PAYLOAD, now=VECTOR_TIMESTAMP + 301)      # replayed too late
    assert not verify(key, {}, VECTOR_PAYLOAD, now=VECTOR_TIMESTAMP)


@pytest.mark.parametrize("secret, why", [
    ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_"),
    ("whsec_not*base64", "base64"),
    ("whsec_" + base64.b64encode(b"x" * 23).decode(), "24 to 64 bytes, has 23"),
    ("whsec_" + base64.b64encode(b"x" * 65).decode(), "24 to 64 bytes, has 65"),
])
def test_bad_secrets_are_refused_saying_why(secret: str, why: str) -> None:
    with pytest.raises(InvalidSecret, match=why):
        parse_secret(secret)


def test_an_id_with_a_full_stop_is_refused() -> None:
    # The full stop delimits the signed content: an id holding one could shift bytes between fields.
    with pytest.raises(ValueError):
        sign(b"k" * 24, "msg.1", 1, b"{}")


def test_the_readme_verification_snippet_accepts_our_signatures_and_rejects_tampering() -> None:
    # Operators copy the README's few lines: they must work with what the MTA sends.
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    snippet = readme.split("Checking a request in Python", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, Any] = {}
    exec(snippet, namespace)
    secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    body = b'{"events":[{"event":"delivered"}]}'
    headers = signed_headers(parse_secret(secret), "msg_0123", int(time.time()), body)
    assert namespace["verify"](secret, headers, body)
    assert not namespace["verify"](secret, headers, body.replace(b"delivered", b"bounced"))
    assert not namespace["verify"]("whsec_" + base64.b64encode(os.urandom(32)).decode(), headers, body)
