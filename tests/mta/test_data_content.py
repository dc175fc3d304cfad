"""The checks on a message's data once its end is found (mta.submission.protocol.unstuffed_content),
held to a plain line-by-line reading of RFC 5321: every line ends in CRLF (2.3.8), a leading
period is removed (4.5.2), no line is longer than the limit (4.5.3.1.6), nor the whole."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mta.submission.protocol import DataRefused, unstuffed_content


def reference(data: bytes, limit: int, longest: int) -> tuple[bytes, bool] | str:
    if b"\r" in data.replace(b"\r\n", b"") or b"\n" in data.replace(b"\r\n", b""):
        return "bare_newline"
    assert data.startswith(b"\r\n") and data.endswith(b"\r\n")
    lines = data[2:].split(b"\r\n")[:-1] if len(data) > 2 else []
    unstuffed = [line[1:] if line.startswith(b".") else line for line in lines]
    content = b"".join(line + b"\r\n" for line in unstuffed)
    if limit and len(content) > limit:
        return "too_big"
    if any(len(line) > longest for line in unstuffed):
        return "line_too_long"
    return content, not any(line.startswith(b".") for line in lines)


def outcome(data: bytes, limit: int, longest: int) -> tuple[bytes, bool] | str:
    try:
        return unstuffed_content(data, limit, longest)
    except DataRefused as refused:
        return refused.reason


pieces = st.sampled_from([b"a", b"b", b".", b"..", b"\r", b"\n", b"\r\n", b"\r\n.", b"\n\r", b"x" * 9])


@settings(max_examples=5000, deadline=None)
@given(body=st.lists(pieces, max_size=30).map(b"".join), limit=st.sampled_from([0, 12, 40]),
       longest=st.sampled_from([4, 10, 998]))
def test_the_data_checks_agree_with_a_line_by_line_reading(body: bytes, limit: int, longest: int) -> None:
    data = b"\r\n" + body + (b"" if body.endswith(b"\r\n") or not body else b"\r\n")
    assert outcome(data, limit, longest) == reference(data, limit, longest)


def test_each_refusal_and_the_as_is_mark() -> None:
    assert outcome(b"\r\nSubject: x\r\n\r\nhi\r\n", 0, 998) == (b"Subject: x\r\n\r\nhi\r\n", True)
    assert outcome(b"\r\n..hi\r\n", 0, 998) == (b".hi\r\n", False)
    assert outcome(b"\r\na\rb\r\n", 0, 998) == "bare_newline"
    assert outcome(b"\r\na\nb\r\n", 0, 998) == "bare_newline"
    assert outcome(b"\r\n" + b"x" * 11 + b"\r\n", 0, 10) == "line_too_long"
    assert outcome(b"\r\n." + b"x" * 10 + b"\r\n", 0, 10) == (b"x" * 10 + b"\r\n", False)   # stuffed: fits
    assert outcome(b"\r\n" + b"x" * 30 + b"\r\n", 20, 998) == "too_big"
