"""HTML link rewriting: only the HTML leaves change, every other byte stays as the app wrote it."""

from __future__ import annotations

import base64
import email
import email.policy
import quopri

from mta.tracking.rewrite import rewrite_html, rewrite_message


def click(url: str) -> str:
    return "https://t.example/c/" + base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")


OPEN = "https://t.example/o/TOKEN"


def html_parts(message: bytes) -> list[str]:
    msg = email.message_from_bytes(message, policy=email.policy.default)
    return [p.get_content() for p in msg.walk() if p.get_content_type() == "text/html"]


def test_links_are_rewritten_and_the_pixel_goes_before_body_end() -> None:
    text, n = rewrite_html('<html><body><a href="https://shop.example/?a=1&amp;b=2">Shop</a>'
                           "<a href='http://x.example/'>x</a><a href=https://bare.example/p>bare</a>"
                           '<a href="mailto:a@b.test">mail</a><a href="#top">top</a>'
                           '<a data-no-track href="https://private.example/">p</a><a name="n">n</a>'
                           "</body></html>", click, OPEN)
    assert n == 3
    assert f'href="{click("https://shop.example/?a=1&b=2")}"' in text      # the entity decoded before signing
    assert click("http://x.example/") in text and click("https://bare.example/p") in text
    assert 'href="mailto:a@b.test"' in text and 'href="#top"' in text and "https://private.example/" in text
    assert text.endswith(f'<img src="{OPEN}" width="1" height="1" alt="" '
                         'style="display:block;border:0;width:1px;height:1px" /></body></html>')


def test_a_link_the_callback_declines_stays() -> None:
    text, n = rewrite_html('<a href="https://t.example/already">x</a>', lambda _u: None, None)
    assert n == 0 and text == '<a href="https://t.example/already">x</a>'


MULTI = (b"From: a@sender.test\r\nTo: b@x.test\r\nSubject: hi\r\nMIME-Version: 1.0\r\n"
         b'Content-Type: multipart/mixed; boundary="outer"\r\n\r\n'
         b"preamble\r\n--outer\r\n"
         b'Content-Type: multipart/alternative; boundary="inner"\r\n\r\n'
         b"--inner\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSee https://shop.example/\r\n"
         b"--inner\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
         + quopri.encodestring('<p>Caf\u00e9 <a href="https://shop.example/caf\u00e9">go</a></p>'.encode()).replace(
             b"\n", b"\r\n")
         + b"\r\n--inner--\r\n"
         b"--outer\r\nContent-Type: text/html; name=page.html\r\n"
         b"Content-Disposition: attachment; filename=page.html\r\n"
         b"\r\n<a href=\"https://attached.example/\">a</a>\r\n"
         b"--outer\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
         + base64.encodebytes(b'<body><a href="https://b64.example/">b</a></body>').replace(b"\n", b"\r\n")
         + b"--outer--\r\nepilogue\r\n")


def test_multipart_only_html_leaves_change() -> None:
    result = rewrite_message(MULTI, click, OPEN)
    assert (result.links, result.pixels) == (2, 2)
    out = result.message
    head_end = MULTI.index(b"\r\n\r\n")
    assert out[:head_end] == MULTI[:head_end]                                   # headers untouched
    assert b"See https://shop.example/\r\n" in out                              # text part untouched
    assert b'<a href="https://attached.example/">a</a>' in out                   # attachment untouched
    assert out.endswith(b"--outer--\r\nepilogue\r\n")
    parts = html_parts(out)
    assert click("https://shop.example/caf\u00e9") in parts[0] and "Caf\u00e9" in parts[0] and OPEN in parts[0]
    assert click("https://b64.example/") in parts[2] and OPEN in parts[2]
    assert "https://attached.example/" in parts[1]
    assert all(len(line) <= 998 for line in out.split(b"\r\n"))
    assert b"\n" not in out.replace(b"\r\n", b"")                               # CRLF only


def test_plain_text_message_is_returned_unchanged() -> None:
    msg = b"From: a@sender.test\r\nSubject: hi\r\n\r\nhttps://shop.example/\r\n"
    result = rewrite_message(msg, click, OPEN)
    assert result.message is msg and result.links == 0 and result.pixels == 0


def test_long_lines_switch_a_7bit_part_to_quoted_printable() -> None:
    links = "".join(f'<a href="https://shop.example/{i}">{i}</a>' for i in range(30))
    msg = (b"From: a@sender.test\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
           + links.encode() + b"\r\n")
    result = rewrite_message(msg, click, None)
    assert result.links == 30
    assert b"Content-Transfer-Encoding: quoted-printable\r\n" in result.message
    assert b"7bit" not in result.message
    assert all(len(line) <= 998 for line in result.message.split(b"\r\n"))
    assert html_parts(result.message)[0].count("https://t.example/c/") == 30


def test_broken_mime_is_left_alone() -> None:
    for msg in (b"Content-Type: multipart/mixed\r\n\r\nno boundary\r\n",
                b"Content-Type: text/html\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\n<a href='https://x/'>\r\n",
                b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n",
                b"Content-Type: text/html\r\n"):
        assert rewrite_message(msg, click, OPEN).links == 0
