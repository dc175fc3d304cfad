"""What an SMTP listener may say back to a hostile client: no internals, nothing unsendable.

aiosmtpd answers an exception raised while handling a command with
`500 Error: (ExceptionName) message`, and builds some replies from the client's own argument,
which may hold lone surrogates (non-UTF-8 bytes decoded with surrogateescape), control
characters or a few hundred octets. Both listeners run every reply through `safe_reply` and
every such exception through `reply_for_exception`: the client gets a plain RFC 5321 reply, the
detail goes to the log and a metric.
"""

from __future__ import annotations

import re
from email.errors import HeaderParseError

# RFC 5321 4.5.3.1.5: a reply line is at most 512 octets with its CRLF.
MAX_REPLY_LINE = 510

# C0 controls, DEL, lone surrogates: none belongs in a reply line.
_UNSENDABLE = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")

# Exceptions that client input provokes in aiosmtpd's and the stdlib's parsers (an unterminated
# "<" gives IndexError in email._header_value_parser, a lone surrogate UnicodeError...).
INPUT_ERRORS = (UnicodeError, IndexError, ValueError, LookupError, HeaderParseError, TypeError)

SYNTAX_REPLY = "501 5.5.2 Syntax error: the command holds bytes that are not allowed here"
ARGUMENT_REPLY = "501 5.5.4 Syntax error in parameters or arguments"
LOCAL_ERROR_REPLY = "451 4.3.0 Requested action aborted: local error in processing"


def safe_reply(status: str) -> str:
    """One reply line that can be sent as UTF-8: unsendable characters become '?', and a line
    that echoes a long argument is cut to the RFC 5321 limit."""
    if _UNSENDABLE.search(status):
        status = _UNSENDABLE.sub("?", status)
    if len(status.encode("utf-8")) > MAX_REPLY_LINE:
        status = status.encode("utf-8")[:MAX_REPLY_LINE].decode("utf-8", "ignore")
    return status


def reply_for_exception(error: BaseException) -> tuple[str, str]:
    """(reply, metric reason) for an exception raised while handling one command.

    Errors that client input provokes are the client's syntax error (501); anything else is
    ours, and gets a transient 451 so that a well-formed message is retried, not bounced.
    """
    if isinstance(error, UnicodeError):
        return SYNTAX_REPLY, "command_error"
    if isinstance(error, INPUT_ERRORS):
        return ARGUMENT_REPLY, "command_error"
    return LOCAL_ERROR_REPLY, "internal_error"
