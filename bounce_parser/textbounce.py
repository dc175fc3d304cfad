"""Records from bounces written for humans (no delivery-status report), and from auto-replies."""

from __future__ import annotations

from . import smtp_text, textscan
from .addresses import find_addresses
from .classifier import classify
from .model import KIND_BOUNCE, BounceRecord, failure_record


def _listed_recipients(
    body: str, senders: set[str], failed_header: str, loose: bool
) -> list[textscan.TextRecipient]:
    """Recipients named in the text; an X-Failed-Recipients header, when present, decides who."""
    found = textscan.scan(body, senders, loose=loose)
    failed = find_addresses(failed_header)
    if not failed:
        return found
    by_address = {item.address: item for item in found}
    listed = []
    for address in failed:
        item = by_address.get(address)
        if item is None:
            # Exim lists the failed address as the user typed it, often without a domain.
            local_part = address.split("@", 1)[0]
            item = textscan.TextRecipient(address, textscan.block_for_local_part(body, local_part), True)
        listed.append(item)
    return listed


def records(
    body: str,
    subject: str,
    senders: set[str],
    failed_header: str,
    message_id: str,
    *,
    from_system: bool,
    family: str = "",
) -> list[BounceRecord]:
    """One record per failed recipient named in a human-readable bounce.

    ``from_system``: the bounce came from a mailer daemon or postmaster, so an address merely
    mentioned in its prose may be taken as the recipient when none is listed plainly.
    """
    found = _listed_recipients(body, senders, failed_header, loose=from_system)
    if not found:
        return []
    action = "delayed" if textscan.is_delay_notice(subject + "\n" + body) else "failed"
    region = textscan.region_diagnostic(body)
    results = []
    for item in found:
        # A recipient listed without words of its own shares the report's words.
        diagnostic = item.diagnostic or region
        command = item.command or smtp_text.find_command(diagnostic)
        remote_mta = smtp_text.find_remote_host(diagnostic)
        classification = classify(
            text=diagnostic,
            context=(region,),
            command=command,
            action=action,
            recipient=item.address,
            remote_host=remote_mta,
            family=family,
        )
        results.append(
            failure_record(
                classification,
                recipient=item.address,
                kind=KIND_BOUNCE,
                action=action,
                status=smtp_text.find_status(diagnostic),
                diagnostic=diagnostic,
                reply_code=smtp_text.find_reply_code(diagnostic),
                remote_mta=remote_mta,
                message_id=message_id,
                command=command,
            )
        )
    return results


def auto_reply(sender: str, body: str, message_id: str) -> list[BounceRecord]:
    """An RFC 3834 auto-reply: its sender is the recipient who is away; not a failure."""
    addresses = find_addresses(sender)
    if not addresses:
        return []
    return [
        BounceRecord(
            recipient=addresses[0],
            kind=KIND_BOUNCE,
            reason="vacation",
            hard=False,
            diagnostic=textscan.region_diagnostic(body, 300),
            message_id=message_id,
            reply_kind="autoreply",
            rule="auto-reply",
        )
    ]
