"""DKIM signing at acceptance: `DkimSigner.sign(message, domain)` gives the DKIM-Signature
field(s) to prepend, one per live key of the sending domain.

- Canonicalisation relaxed/relaxed, body hashed once and shared by every signature.
- h= names the usual identity and content headers that the message has; From and Subject are
  over-signed (listed once more than they occur) so nobody can add a second one unnoticed.
- Keys are looked up by sending domain, else by its closest parent domain that has keys
  (d=example.com aligns with From: news.example.com under DMARC's default relaxed alignment).
- `reload()` re-reads key files (SIGHUP); a broken file keeps the previously loaded key.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from mta.compliance.dkim.canon import (
    normalize_line_ends,
    parse_header_fields,
    relaxed_body,
    relaxed_header,
    split_message,
)
from mta.compliance.dkim.config import DkimKeyConfig
from mta.compliance.dkim.keys import DkimKey, DkimKeyError, load_key

__all__ = ["OVERSIGNED_HEADERS", "SIGNED_HEADERS", "DkimSigner", "ReloadReport"]

log = logging.getLogger("mta.dkim")

# Signed when present, in this order. Identity and threading headers first, then content and the
# list headers receivers act on (RFC 8058 requires List-Unsubscribe(-Post) to be signed).
SIGNED_HEADERS: tuple[str, ...] = (
    "from", "sender", "reply-to", "subject", "date", "to", "cc", "message-id", "in-reply-to", "references",
    "mime-version", "content-type", "content-transfer-encoding", "content-language",
    "list-id", "list-unsubscribe", "list-unsubscribe-post", "feedback-id",
)
OVERSIGNED_HEADERS: frozenset[str] = frozenset({"from", "subject"})

_LINE_WIDTH = 78


@dataclass
class ReloadReport:
    """What a (re)load found; errors name the config entry and file."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


class DkimSigner:
    """Signs messages with the keys configured per sending domain. Thread-safe to call `sign`
    while another thread reloads (the key table is swapped whole)."""

    def __init__(self, configs: Sequence[DkimKeyConfig] = (), *, clock: Callable[[], float] = time.time,
                 config_prefix: str = "dkim") -> None:
        """Loads every key; raises DkimKeyError (naming the entry) if any key is unusable, so a bad
        key stops the MTA at start-up rather than sending unsigned mail."""
        self._clock = clock
        self._prefix = config_prefix
        self._configs = list(configs)
        self._by_domain: dict[str, tuple[DkimKey, ...]] = {}
        self._reload_lock = threading.Lock()
        self.generation = 0         # counts reloads (a signing worker holding copies starts anew)
        report = self._load(self._configs, previous={})
        for warning in report.warnings:
            log.warning("%s", warning)
        if report.errors:
            raise DkimKeyError("; ".join(report.errors))

    # -- keys -------------------------------------------------------------------------------------

    def reload(self, configs: Sequence[DkimKeyConfig] | None = None) -> ReloadReport:
        """Re-reads key files (of `configs`, if given: the reloaded config's entries).

        An entry whose file is now broken keeps the key loaded before for the same domain and
        selector, and its error is reported and logged; an entry that never loaded is left out."""
        with self._reload_lock:
            if configs is not None:
                self._configs = list(configs)
            previous = {(k.domain, k.selector): k for keys in self._by_domain.values() for k in keys}
            report = self._load(self._configs, previous)
            self.generation += 1
        for warning in report.warnings:
            log.warning("%s", warning)
        for error in report.errors:
            log.error("%s", error)
        return report

    def _load(self, configs: Sequence[DkimKeyConfig], previous: dict[tuple[str, str], DkimKey]) -> ReloadReport:
        report = ReloadReport()
        table: dict[str, list[DkimKey]] = {}
        for i, config in enumerate(configs):
            where = f"{self._prefix}.keys[{i}]"
            try:
                key, warnings = load_key(config, where)
                report.warnings.extend(warnings)
            except DkimKeyError as exc:
                old = previous.get((config.domain.lower().rstrip("."), config.selector))
                if old is None:
                    report.errors.append(str(exc))
                    continue
                report.errors.append(f"{exc} (still signing with the key loaded before)")
                key = old
            table.setdefault(key.domain, []).append(key)
        self._by_domain = {domain: tuple(keys) for domain, keys in table.items()}
        return report

    def keys_for(self, domain: str) -> tuple[DkimKey, ...]:
        """The keys that sign for `domain`: its own, else those of its closest parent with keys."""
        name = domain.lower().rstrip(".")
        table = self._by_domain
        while name:
            keys = table.get(name)
            if keys:
                return keys
            _label, _dot, name = name.partition(".")
            if "." not in name:
                break               # never fall back to a TLD
        return ()

    @property
    def domains(self) -> list[str]:
        return sorted(self._by_domain)

    @property
    def configs(self) -> list[DkimKeyConfig]:
        return list(self._configs)

    # -- signing ----------------------------------------------------------------------------------

    def sign(self, message: bytes, domain: str, timestamp: int | None = None) -> bytes:
        """DKIM-Signature field(s) to prepend to `message` (CRLF line ends); b"" if `domain` has no key.
        `timestamp` (t=) defaults to the clock's now."""
        keys = self.keys_for(domain)
        if not keys:
            return b""
        header_block, body = split_message(normalize_line_ends(message))
        body_hash = base64.b64encode(hashlib.sha256(relaxed_body(body)).digest()).decode("ascii")
        fields = parse_header_fields(header_block)
        names = _header_list(fields)
        signed_headers = _canonical_signed_headers(fields, names)
        if timestamp is None:
            timestamp = int(self._clock())
        return b"".join(_signature_field(key, names, body_hash, signed_headers, timestamp) for key in keys)


def _header_list(fields: list[tuple[bytes, bytes]]) -> list[str]:
    """h= names: each wanted header as often as it occurs; over-signed ones once more."""
    counts: dict[str, int] = {}
    for name, _raw in fields:
        text = name.decode("ascii", "replace")
        counts[text] = counts.get(text, 0) + 1
    names: list[str] = []
    for name in SIGNED_HEADERS:
        n = counts.get(name, 0) + (1 if name in OVERSIGNED_HEADERS else 0)
        names.extend([name] * n)
    return names


def _canonical_signed_headers(fields: list[tuple[bytes, bytes]], names: list[str]) -> bytes:
    """The h= headers, canonicalised, in h= order; repeated names take instances from the bottom
    up (RFC 6376 5.4.2), and names beyond the instances present add nothing."""
    instances: dict[bytes, list[bytes]] = {}
    for name, raw in fields:
        instances.setdefault(name, []).append(raw)
    out = []
    for text in names:
        name = text.encode("ascii")
        stack = instances.get(name)
        if stack:
            out.append(relaxed_header(name, stack.pop()))
    return b"".join(out)


def _signature_field(key: DkimKey, names: list[str], body_hash: str, signed_headers: bytes,
                     timestamp: int) -> bytes:
    unsigned = _fold_signature([
        "v=1;", f"a={key.algorithm};", "c=relaxed/relaxed;", f"d={key.domain};", f"s={key.selector};",
        f"t={timestamp};",
        *_fold_items("h=", names, ":", ";"),
        f"bh={body_hash};",
        "b=",
    ])
    # The signature covers this field with an empty b= as the last, unterminated header.
    data = signed_headers + relaxed_header(b"dkim-signature", unsigned).removesuffix(b"\r\n")
    signature = base64.b64encode(key.sign(data)).decode("ascii")
    return unsigned + _fold_base64(signature, first_width=_LINE_WIDTH - len(unsigned.rsplit(b"\n", 1)[-1]))


def _fold_items(prefix: str, items: list[str], separator: str, terminator: str) -> list[str]:
    """Pieces of `prefix` + items joined by `separator`, each short enough to sit on one line."""
    pieces: list[str] = []
    current = prefix
    for i, item in enumerate(items):
        token = item + (separator if i < len(items) - 1 else terminator)
        if len(current) + len(token) > _LINE_WIDTH - 1 and current != prefix:
            pieces.append(current)
            current = ""
        current += token
    pieces.append(current if items else prefix + terminator)
    return pieces


def _fold_signature(pieces: list[str]) -> bytes:
    """`DKIM-Signature: ` + pieces, joined by a space or by CRLF TAB where a line would get long."""
    line = "DKIM-Signature: " + pieces[0]
    lines = []
    for piece in pieces[1:]:
        if len(line) + 1 + len(piece) > _LINE_WIDTH:
            lines.append(line)
            line = "\t" + piece
        else:
            line += " " + piece
    lines.append(line)
    return "\r\n".join(lines).encode("ascii")


def _fold_base64(value: str, first_width: int) -> bytes:
    """b= value with CRLF TAB folds (whitespace inside b= is ignored by verifiers), then CRLF."""
    width = _LINE_WIDTH - 1
    first = max(first_width, 0)
    chunks = [value[:first]] if first else [""]
    chunks.extend(value[i:i + width] for i in range(first, len(value), width))
    return "\r\n\t".join(chunks).encode("ascii") + b"\r\n"
