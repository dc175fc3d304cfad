"""A MessageRequest (with its rendered subject and bodies) as RFC 5322 bytes with CRLF line
ends: text, HTML (multipart/alternative when both), attachments (multipart/mixed). Pure. Message-ID
and Date are left to the acceptance pipeline, as for SMTP, so both front ends add them alike."""

from __future__ import annotations

import email.policy
from email.message import EmailMessage

from mta.http.api.request import MessageRequest
from mta.http.api.templates import Rendered

_POLICY = email.policy.SMTP.clone(max_line_length=78)
_POLICY_UTF8 = email.policy.SMTPUTF8.clone(max_line_length=78)


def compose(req: MessageRequest, rendered: Rendered) -> bytes:
    policy = _POLICY_UTF8 if req.smtputf8 else _POLICY
    msg = EmailMessage(policy=policy)
    msg["From"] = req.sender.formatted()
    if req.to:
        msg["To"] = ", ".join(m.formatted() for m in req.to)
    if req.cc:
        msg["Cc"] = ", ".join(m.formatted() for m in req.cc)
    if req.reply_to:
        msg["Reply-To"] = ", ".join(m.formatted() for m in req.reply_to)
    msg["Subject"] = rendered.subject
    for name, value in req.headers.items():
        msg[name] = value
    if rendered.text is not None:
        msg.set_content(rendered.text, cte=_cte(rendered.text))
        if rendered.html is not None:
            msg.add_alternative(rendered.html, subtype="html", cte=_cte(rendered.html))
    else:
        msg.set_content(rendered.html or "", subtype="html", cte=_cte(rendered.html or ""))
    for a in req.attachments:
        maintype, _slash, subtype = a.content_type.partition("/")
        msg.add_attachment(a.content, maintype=maintype, subtype=subtype, filename=a.filename)
    return msg.as_bytes(policy=policy)


def _cte(text: str) -> str:
    """7bit where it fits; quoted-printable otherwise (8bit would need 8BITMIME on every hop)."""
    if text.isascii() and all(len(line) <= 998 for line in text.splitlines()):
        return "7bit"
    return "quoted-printable"


def rendered_plain(req: MessageRequest) -> Rendered:
    """A request without a template: its own subject and bodies."""
    return Rendered(req.subject, req.text, req.html)
