"""mta.wireform: when a body may skip the dot-stuffing pass, and that skipping it changes nothing."""

from __future__ import annotations

import pytest
from hypothesis import strategies as st

from mta.queue.bodycache import BodyCache
from mta.wireform import TERMINATOR, goes_as_is, wire_body
from tests.support.fuzz import fuzz, fuzz_examples

# Texts made of the pieces that matter: line ends of every kind, periods, ordinary bytes.
pieces = st.lists(st.sampled_from([b"\r\n", b"\r", b"\n", b".", b"..", b"a", b" ", b"\r\n.", b"\r\n.\r\n"]),
                  max_size=30).map(b"".join)


@pytest.mark.parametrize(("text", "as_is"), [
    (b"", True),
    (b"Subject: x\r\n\r\nbody\r\n", True),
    (b"a\r\n.b\r\n", False),             # a line starting with a period
    (b".a\r\n", False),
    (b"a\r\nb", False),                  # no final CRLF
    (b"a\nb\r\n", False),                # bare LF
    (b"a\rb\r\n", False),                # bare CR
    (b"a. b.\r\n", True),                # periods, but none starting a line
])
def test_goes_as_is(text: bytes, as_is: bool) -> None:
    assert goes_as_is(text) is as_is


@fuzz_examples(quick=300, fuzz=50_000)
def test_a_text_that_goes_as_is_is_its_own_wire_form(max_examples: int, quick: bool) -> None:
    @fuzz(max_examples, quick, pieces | st.binary(max_size=200))
    def check(text: bytes) -> None:
        if goes_as_is(text):
            assert wire_body(text) == text + TERMINATOR
        else:
            assert wire_body(text) != text + TERMINATOR


@fuzz_examples(quick=300, fuzz=50_000)
def test_two_texts_that_go_as_is_go_as_is_joined(max_examples: int, quick: bool) -> None:
    # What MessageBuilder relies on: it asks only about the lines it made, not the client's.
    @fuzz(max_examples, quick, pieces, pieces)
    def check(a: bytes, b: bytes) -> None:
        if goes_as_is(a) and goes_as_is(b):
            assert goes_as_is(a + b)


def test_body_cache_marks_only_the_bodies_it_holds() -> None:
    cache = BodyCache(max_bytes=100)
    cache.put(1, b"x" * 60, refs=1, as_is=True)
    cache.put(2, b"y" * 60, refs=1, as_is=True)      # does not fit: read from the spool, checked
    assert cache.as_is(1) and cache.get(1) is not None
    assert not cache.as_is(2) and cache.get(2) is None
    cache.put(3, b"z" * 10, refs=1)
    assert not cache.as_is(3)
    cache.release(1)
    assert not cache.as_is(1)
    cache.fill(2, b"y" * 60)                           # read back from the spool: never marked
    assert cache.get(2) is not None and not cache.as_is(2)
