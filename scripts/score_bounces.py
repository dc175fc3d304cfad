#!/usr/bin/env python3
"""Score bounce_parser against the labelled bounce corpus (shared/corpus/bounces/README.md).

Per file, the recipients reported are matched with the labelled ones as multisets
(case-insensitive, angle brackets stripped).  Recall = matched / labelled, precision = matched /
reported; files in state ``unparsed`` are not counted, and anything reported for a ``no-bounce``
file is a false positive.  Reason agreement and hard/soft agreement are over matched recipients.
Speed is the whole corpus parsed in this process, in files per second: the best of
``--passes`` passes (the first also pays for compiling the patterns).

``--half even|odd`` scores one half of the corpus only, for a cross-check of rules developed on
the other half.  Halves are made of the manifest's ``group``s (the LF, CRLF and CR copies of a
message, or an mbox and the messages split from it, are one group), alternating in manifest
order, so that no message is in both halves.

    scripts/score_bounces.py [CORPUS_DIR] [--json] [--details] [--half even|odd]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bounce_parser import BounceRecord, ParseResult, parse_bytes, softness, split_mbox  # noqa: E402

# The corpus lives in the workplace's shared folder: beside the repository, or at /work/shared
# when the repository was cloned elsewhere (as CI does); BOUNCE_CORPUS overrides both.
DEFAULT_CORPUS = next((p for p in (Path(os.environ["BOUNCE_CORPUS"]) if os.environ.get("BOUNCE_CORPUS") else None,
                          REPO_ROOT.parent / "shared" / "corpus" / "bounces",
                          Path("/work/shared/corpus/bounces")) if p is not None and p.is_dir()),
              REPO_ROOT.parent / "shared" / "corpus" / "bounces")


def _key(address: str) -> str:
    return address.strip().strip("<>").strip().lower()


def _read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def parse_file(raw: bytes) -> list[ParseResult]:
    return [parse_bytes(message) for message in split_mbox(raw)]


def half_of(manifest: list[dict], half: str) -> list[dict]:
    """The manifest entries of one half ("even" or "odd"), whole groups at a time."""
    order: dict[str, int] = {}
    for entry in manifest:
        order.setdefault(entry.get("group") or entry["file"], len(order))
    wanted = 0 if half == "even" else 1
    return [entry for entry in manifest if order[entry.get("group") or entry["file"]] % 2 == wanted]


def score(corpus: Path, half: str = "", passes: int = 5) -> tuple[dict, list[dict]]:
    """The figures, and one row per disagreement (for --details); ``half`` scores one half only."""
    manifest = _read_jsonl(corpus / "manifest.jsonl")
    if half:
        manifest = half_of(manifest, half)
    labels: dict[str, list[dict]] = defaultdict(list)
    for label in _read_jsonl(corpus / "labels.jsonl"):
        labels[label["file"]].append(label)

    contents = {entry["file"]: (corpus / "samples" / entry["file"]).read_bytes() for entry in manifest}
    elapsed = float("inf")
    for _ in range(max(1, passes)):
        started = time.perf_counter()
        parsed = {name: parse_file(raw) for name, raw in contents.items()}
        elapsed = min(elapsed, time.perf_counter() - started)
    results = {name: [record for result in found for record in result.records] for name, found in parsed.items()}
    parser_errors = sum(
        defect.startswith("parser error") for found in parsed.values() for result in found for defect in result.defects
    )

    labelled = reported = matched = same_reason = same_softness = false_positives = 0
    files_scored = 0
    problems: list[dict] = []
    for entry in manifest:
        name, state = entry["file"], entry["state"]
        records = results[name]
        if state == "unparsed":
            continue
        files_scored += 1
        if state == "no-bounce":
            false_positives += len(records)
            reported += len(records)
            problems += [{"file": name, "problem": "false positive", "recipient": r.recipient} for r in records]
            continue
        expected = labels.get(name, [])
        labelled += len(expected)
        reported += len(records)
        ours_by_address: dict[str, list[BounceRecord]] = defaultdict(list)
        for record in records:
            ours_by_address[_key(record.recipient)].append(record)
        unmatched_ours = Counter({address: len(found) for address, found in ours_by_address.items()})
        for label in expected:
            address = _key(label["recipient"])
            if not ours_by_address.get(address):
                problems.append({"file": name, "problem": "missed", "recipient": address, "label": label["reason"]})
                continue
            record = ours_by_address[address].pop(0)
            unmatched_ours[address] -= 1
            matched += 1
            ours_softness = "hard" if record.hard else softness(record.reason)
            if record.reason == label["reason"]:
                same_reason += 1
            else:
                problems.append({
                    "file": name, "problem": "reason", "recipient": address, "label": label["reason"],
                    "ours": record.reason, "status": record.status, "reason_rule": record.reason_rule,
                    "kind": record.reply_kind, "kind_rule": record.rule,
                    "diagnostic": record.diagnostic[:160],
                })
            if ours_softness == label["softbounce"]:
                same_softness += 1
        for address, count in unmatched_ours.items():
            problems += [{"file": name, "problem": "extra", "recipient": address}] * max(count, 0)

    figures = {
        "files": len(manifest),
        "files_scored": files_scored,
        "labelled": labelled,
        "reported": reported,
        "matched": matched,
        "recall": matched / labelled if labelled else 0.0,
        "precision": matched / reported if reported else 0.0,
        "reason_agreement": same_reason / matched if matched else 0.0,
        "hard_soft_agreement": same_softness / matched if matched else 0.0,
        "false_positives": false_positives,
        "parser_errors": parser_errors,
        "seconds": elapsed,
        "files_per_second": len(manifest) / elapsed if elapsed else 0.0,
    }
    return figures, problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", nargs="?", type=Path, default=DEFAULT_CORPUS, help="corpus directory")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    parser.add_argument("--details", action="store_true", help="also list every disagreement")
    parser.add_argument("--half", choices=("even", "odd"), default="", help="score one half of the groups only")
    parser.add_argument("--passes", type=int, default=5, help="parse the corpus this many times; speed is the best")
    args = parser.parse_args(argv)
    if not (args.corpus / "manifest.jsonl").is_file():
        print(f"score_bounces: no corpus at {args.corpus}", file=sys.stderr)
        return 2
    figures, problems = score(args.corpus, args.half, args.passes)
    if args.json:
        print(json.dumps(figures if not args.details else {**figures, "problems": problems}))
        return 0
    if args.details:
        for problem in problems:
            print(json.dumps(problem, ensure_ascii=False))
    print(f"files              {figures['files']} ({figures['files_scored']} scored)")
    print(f"recipients         {figures['labelled']} labelled, {figures['reported']} reported, "
          f"{figures['matched']} matched")
    print(f"recall             {figures['recall']:.2%}")
    print(f"precision          {figures['precision']:.2%}")
    print(f"reason agreement   {figures['reason_agreement']:.2%}")
    print(f"hard/soft agreement {figures['hard_soft_agreement']:.2%}")
    print(f"false positives    {figures['false_positives']} (no-bounce files)")
    print(f"parser errors      {figures['parser_errors']} (caught, would have lost records)")
    print(f"speed              {figures['files_per_second']:.0f} files/s ({figures['seconds']:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
