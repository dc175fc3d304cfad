"""Fixtures for bounce_parser tests: the shared bounce corpus, read at test time."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
# The corpus lives in the workplace's shared folder: beside the repository, or at /work/shared
# when the repository was cloned elsewhere (as CI does); BOUNCE_CORPUS overrides both.
CORPUS = next((p for p in (Path(os.environ["BOUNCE_CORPUS"]) if os.environ.get("BOUNCE_CORPUS") else None,
                          REPO_ROOT.parent / "shared" / "corpus" / "bounces",
                          Path("/work/shared/corpus/bounces")) if p is not None and p.is_dir()),
              REPO_ROOT.parent / "shared" / "corpus" / "bounces")
SAMPLES = CORPUS / "samples"
# Other projects' fixtures, labelled the same way (shared/corpus/bounces-foreign/README.md).
FOREIGN_CORPUS = CORPUS.parent / "bounces-foreign"


@pytest.fixture(scope="session")
def corpus() -> Path:
    if not (CORPUS / "manifest.jsonl").is_file():
        pytest.skip(f"bounce corpus not found at {CORPUS}")
    return CORPUS


@pytest.fixture(scope="session")
def foreign_corpus() -> Path:
    if not (FOREIGN_CORPUS / "manifest.jsonl").is_file():
        pytest.skip(f"foreign bounce corpus not found at {FOREIGN_CORPUS}")
    return FOREIGN_CORPUS


@pytest.fixture(scope="session")
def sample(corpus: Path):
    """``sample("maildir/bsd/lhost-postfix-33.eml")`` -> the file's bytes (skips if missing)."""

    def read(relative: str) -> bytes:
        path = corpus / "samples" / relative
        if not path.is_file():
            pytest.skip(f"corpus sample {relative} not found")
        return path.read_bytes()

    return read


@pytest.fixture(scope="session")
def labels(corpus: Path) -> dict[str, list[dict]]:
    """Labels per sample file (relative to samples/)."""
    found: dict[str, list[dict]] = defaultdict(list)
    with (corpus / "labels.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            label = json.loads(line)
            found[label["file"]].append(label)
    return found
