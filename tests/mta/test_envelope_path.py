"""The plain MAIL/RCPT path reader (mta.submission.protocol.plain_path) against aiosmtpd's
`_getaddr` (the stdlib's RFC 5322 parser): wherever the fast reader answers, it answers the same;
other forms are left to the stdlib."""

from __future__ import annotations

import pytest
from aiosmtpd.smtp import SMTP
from hypothesis import strategies as st

from mta.submission.protocol import plain_path
from tests.support.fuzz import fuzz, fuzz_examples


def read(reader, arg: str) -> tuple[str | None, list[str] | None]:
    """Address and parameter words: what smtp_MAIL / smtp_RCPT go on with (`.split()`)."""
    found = reader(arg)
    if found is None:
        return None, None
    address, rest = found
    return address, None if rest is None else rest.split()


def stdlib_getaddr(arg: str) -> tuple[str | None, str | None]:
    return SMTP._getaddr(SMTP.__new__(SMTP), arg)     # aiosmtpd's reader, no session needed


@pytest.mark.parametrize(("arg", "expected"), [
    ("<user@example.test>", ("user@example.test", "")),
    ("<>", ("<>", "")),
    ("<> SIZE=100", ("<>", "SIZE=100")),
    ("<a.b+tag@mx-1.example.test> SIZE=20480 BODY=8BITMIME", ("a.b+tag@mx-1.example.test", "SIZE=20480 BODY=8BITMIME")),
    ("<User@Example.TEST>\tSMTPUTF8", ("User@Example.TEST", "SMTPUTF8")),
])
def test_plain_paths_are_read_as_the_stdlib_reads_them(arg: str, expected: tuple[str, str]) -> None:
    assert plain_path(arg) == expected
    assert read(stdlib_getaddr, arg) == read(plain_path, arg)


@pytest.mark.parametrize("arg", [
    "user@example.test",            # no brackets
    "<\"quoted local\"@example.test>",
    "<@relay.example:user@example.test>",
    "<user@[127.0.0.1]>",
    "<user@example.test.>",
    "<.user@example.test>",
    "<us..er@example.test>",
    "<user@example.test>SIZE=1",    # no space before the parameters
    "<üser@example.test>",
    " <user@example.test>",
    "<user(comment)@example.test>",
    "<user@example.test",
    "<user@example.test> (a comment) SIZE=1",
])
def test_other_forms_go_to_the_stdlib(arg: str) -> None:
    assert plain_path(arg) is None


_PATH_CHARS = st.sampled_from([*"aZ09.-+_=@<> \t\"()[]:\\,;!#$%&'*/?^`{|}~ü", "SIZE=1", "BODY=8BITMIME"])


@fuzz_examples(quick=2000, fuzz=50_000)
def test_plain_path_agrees_with_the_stdlib(max_examples: int, quick: bool) -> None:
    @fuzz(max_examples, quick, st.lists(_PATH_CHARS, max_size=30).map("".join),
          st.sampled_from(["", "a@b.example", "<", "<x@y.example>"]))
    def check(text: str, prefix: str) -> None:
        arg = prefix + text
        if plain_path(arg) is not None:
            assert read(stdlib_getaddr, arg) == read(plain_path, arg), arg
