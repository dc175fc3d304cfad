"""Plain data that flows between the MTA's rooms: messages, recipients and delivery jobs."""

from __future__ import annotations

from dataclasses import dataclass, field

# Recipient states in the spool. Only WAITING rows are picked up by the scheduler's scan; the
# others are owned by the running daemon and go back to WAITING when it starts.
WAITING = 0      # on disk, waiting for its next attempt time
CLAIMED = 1      # loaded into the daemon's memory (a job), not yet attempted
ATTEMPTING = 2   # a delivery attempt has started: after a crash this may be a duplicate
HELD = 3         # put on hold by an operator; never scheduled until released


@dataclass(slots=True)
class MessageInfo:
    """What delivery needs to know of a queued message (the body stays on disk)."""

    id: int                    # spool row id
    queue_id: str
    sender: str                # envelope sender, "" for the null sender
    created: float             # wall-clock time of acceptance
    size: int
    stream: str
    priority: int              # lower is sent first
    tenant: str
    pool: str
    sending_domain: str
    header_message_id: str
    smtputf8: bool = False
    warned: bool = False       # a "delayed" DSN was sent already
    campaign: str = ""         # the campaign (tag) from the submission header, "" if none
    variant: str = ""          # the A/B variant of its campaign, "" if none


@dataclass(slots=True)
class Recipient:
    id: int
    address: str
    domain: str
    attempts: int = 0


@dataclass(slots=True)
class Job:
    """Recipients of one message that go to one destination domain in one transaction."""

    message: MessageInfo
    domain: str
    recipients: list[Recipient]
    site: str = ""
    seq: int = 0               # FIFO order among equal priorities
    resumes: int = 0           # times the job went back to its queue without an attempt
    # Jobs of the same message for other domains of the same site, folded into this one so the
    # message's recipients on one site share one transaction (their memory accounting stays theirs).
    merged: list[Job] = field(default_factory=list)
    journal_token: int = -1    # the delivery journal segment of its attempt note (-1: none)
    journaled_delivered: bool = False   # its delivered note went to the journal from the reply itself

    @property
    def priority(self) -> int:
        return self.message.priority

    def take_attempt(self) -> tuple[int, list[int]]:
        """The delivery journal's open attempt of this job (token and recipient ids), taken off it
        so that it is settled once: a job that goes back to its lane and ends some other way later
        must not settle it again (that would wipe a journal segment too early)."""
        token, ids = self.journal_token, [r.id for r in self.recipients]
        self.journal_token = -1
        return token, ids


@dataclass(slots=True)
class NewMessage:
    """A message accepted by a listener, before it has a spool id."""

    queue_id: str
    sender: str
    recipients: list[str]
    body: bytes
    created: float
    stream: str
    priority: int
    tenant: str
    pool: str
    sending_domain: str
    header_message_id: str
    smtputf8: bool = False
    client: str = ""
    auth_user: str = ""
    campaign: str = ""
    # domains whose recipients go straight to the daemon's memory (state CLAIMED)
    claimed_domains: set[str] = field(default_factory=set)
    not_before: float = 0.0    # a scheduled send: no attempt before this time (0 = now)
    variant: str = ""          # the A/B variant of its campaign, "" if none
    # `body` goes after a 354 unchanged (mta.wireform.goes_as_is); False when nobody checked
    body_as_is: bool = False


@dataclass(slots=True)
class Deferral:
    recipient_id: int
    attempts: int
    next_attempt: float
    code: int
    text: str
    site: str = ""
