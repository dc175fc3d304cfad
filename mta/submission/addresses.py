"""Envelope address checks for submission: what we accept as a recipient or sender.

The relay decision itself is made per session (trusted network or authenticated user), never
from the address, so no address form can open a relay. These checks refuse the forms that
downstream systems might interpret as routing (source routes, quoted local parts with routing
characters, address literals) and names that cannot be a mail domain.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_ATOM_CHARS = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~-"
_DOT_ATOM = re.compile(rf"[{_ATOM_CHARS}]+(?:\.[{_ATOM_CHARS}]+)*")
_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


@dataclass(frozen=True, slots=True)
class AddressProblem:
    code: int
    status: str
    text: str

    def reply(self) -> str:
        return f"{self.code} {self.status} {self.text}"


def split_address(address: str) -> tuple[str, str]:
    local, _at, domain = address.rpartition("@")
    return local, domain


def check_recipient(address: str, smtputf8: bool) -> AddressProblem | None:
    """None if `address` is an acceptable destination mailbox, else the reply to give."""
    if "@" not in address:
        return AddressProblem(553, "5.1.3", "Recipient address must be local-part@domain")
    local, domain = split_address(address)
    problem = _check_local_part(local, smtputf8)
    if problem:
        return problem
    return check_domain(domain, smtputf8)


def check_sender(address: str, smtputf8: bool) -> AddressProblem | None:
    if address == "":
        return None  # the null sender is allowed (it only means "send no bounces")
    if "@" not in address:
        return AddressProblem(553, "5.1.7", "Sender address must be local-part@domain")
    local, domain = split_address(address)
    problem = _check_local_part(local, smtputf8)
    if problem:
        return AddressProblem(553, "5.1.7", problem.text)
    problem = check_domain(domain, smtputf8)
    if problem:
        return AddressProblem(553, "5.1.8", problem.text.replace("Destination", "Sender"))
    return None


def _check_local_part(local: str, smtputf8: bool) -> AddressProblem | None:
    if not local:
        return AddressProblem(553, "5.1.3", "Empty local part")
    if len(local.encode("utf-8", "surrogateescape")) > 256:
        return AddressProblem(553, "5.1.3", "Local part too long")
    if local.startswith('"'):
        return AddressProblem(553, "5.1.3", "Quoted local parts are not accepted")
    if smtputf8 and not local.isascii():
        if any(0xD800 <= ord(ch) <= 0xDFFF for ch in local):
            # Undecodable bytes from the wire (surrogate escapes): RFC 6531 wants UTF-8, and such
            # an address could not be written to the spool, the events or the policy protocol.
            return AddressProblem(553, "5.6.7", "Local part is not valid UTF-8")
        if any(ch.isspace() or ord(ch) < 32 or ch in '"(),:;<>@[\\]' for ch in local) or ".." in local:
            return AddressProblem(553, "5.1.3", "Malformed local part")
        return None
    if not _DOT_ATOM.fullmatch(local):
        return AddressProblem(553, "5.1.3", "Malformed local part")
    return None


def check_domain(domain: str, smtputf8: bool) -> AddressProblem | None:
    if not domain:
        return AddressProblem(553, "5.1.2", "Empty domain")
    if domain.startswith("["):
        return AddressProblem(553, "5.1.2", "Address literals are not accepted as destinations")
    name = domain.rstrip(".") if domain.endswith(".") and not domain.endswith("..") else domain
    if not name.isascii():
        if not smtputf8:
            return AddressProblem(553, "5.6.7", "Non-ASCII domain needs SMTPUTF8")
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            return AddressProblem(553, "5.1.2", "Invalid internationalised domain name")
    if len(name) > 253 or "." not in name:
        return AddressProblem(553, "5.1.2", "Destination domain is not a valid mail domain")
    labels = name.split(".")
    if not all(_LABEL.fullmatch(label) for label in labels):
        return AddressProblem(553, "5.1.2", "Destination domain is not a valid mail domain")
    if labels[-1].isdigit():
        return AddressProblem(553, "5.1.2", "Destination domain is not a valid mail domain")
    return None


def normalize_domain(domain: str) -> str:
    """Lower-case, without a trailing dot: the form queues and sites use."""
    return domain.rstrip(".").lower()
