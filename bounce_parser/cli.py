"""``bounce-parse``: print the recipients found in bounce, DSN and ARF files.

    bounce-parse --json FILE...     one JSON object per recipient per line (shared/interfaces.md)
    bounce-parse FILE...            a readable table

A file may be a single message or an mbox; ``-`` reads standard input; a directory stands
for every file under it (a Maildir, a corpus), in name order.  A file with no bounce prints
nothing.  The exit status is 0, or 1 when a file could not be read.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from typing import TextIO

from . import parse_bytes, split_mbox
from .model import BounceRecord

_TABLE_COLUMNS = ("kind", "recipient", "reason", "hard", "status", "diagnostic")


def records_of(raw: bytes) -> Iterator[BounceRecord]:
    for message in split_mbox(raw):
        yield from parse_bytes(message).records


def _read(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    with open(path, "rb") as handle:
        return handle.read()


def expand_paths(paths: list[str]) -> Iterator[str]:
    """The given paths, with each directory replaced by the regular files under it, sorted."""
    for path in paths:
        if path != "-" and os.path.isdir(path):
            for root, dirs, files in os.walk(path):
                dirs.sort()
                for name in sorted(files):
                    yield os.path.join(root, name)
        else:
            yield path


def _print_table_row(out: TextIO, path: str, record: BounceRecord) -> None:
    diagnostic = record.diagnostic if len(record.diagnostic) <= 70 else record.diagnostic[:67] + "..."
    out.write(
        f"{path}\t{record.kind}\t{record.recipient}\t{record.reason}\t"
        f"{'hard' if record.hard else 'soft'}\t{record.status or '-'}\t{diagnostic}\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bounce-parse", description="Print the recipients reported by bounce, DSN and ARF messages."
    )
    parser.add_argument("--json", action="store_true", help="print JSON Lines, one object per recipient")
    parser.add_argument(
        "files", nargs="+", metavar="FILE", help="message or mbox files, or directories of them ('-' for stdin)"
    )
    args = parser.parse_args(argv)

    try:
        return _run(args.files, args.json, sys.stdout)
    except BrokenPipeError:
        # The reader went away (``| head``): stop quietly, and keep Python from complaining
        # again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _run(paths: list[str], as_json: bool, out: TextIO) -> int:
    status = 0
    if not as_json:
        out.write("file\t" + "\t".join(_TABLE_COLUMNS) + "\n")
    for path in expand_paths(paths):
        try:
            raw = _read(path)
        except OSError as exc:
            print(f"bounce-parse: {path}: {exc.strerror or exc}", file=sys.stderr)
            status = 1
            continue
        for record in records_of(raw):
            if as_json:
                out.write(json.dumps(record.to_json_dict(path)) + "\n")
            else:
                _print_table_row(out, path, record)
    out.flush()
    return status


if __name__ == "__main__":
    sys.exit(main())
