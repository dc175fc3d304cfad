"""The corpus score (scripts/score_bounces.py) as a regression test.

Thresholds sit a little under the figures measured when they were set, so a change that loses
recipients, invents some, or moves reasons away from the labels fails here.  Sisimai's set
(``bounces``): recall 99.36%, precision 99.79%, reason agreement 97.22% (98.10% and 96.10% on the
two halves), hard/soft 98.72%.  Other projects' fixtures (``bounces-foreign``), which the rules
were not first written on: recall 98.58%, precision 99.29%, reason 96.40%, hard/soft 98.56%.
``reason`` follows the labels' conventions; what the policy acts on is ``kind``, which the
labels do not score (test_classifier and test_naming check it).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "score_bounces.py"


@pytest.fixture(scope="module")
def scorer():
    spec = importlib.util.spec_from_file_location("score_bounces", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def figures(corpus: Path, scorer) -> dict:
    found, _problems = scorer.score(corpus, passes=1)
    return found


def test_recipient_recall(figures):
    assert figures["recall"] >= 0.99


def test_recipient_precision(figures):
    assert figures["precision"] >= 0.99


def test_no_bounce_files_give_nothing(figures):
    assert figures["false_positives"] == 0


def test_no_parser_errors_on_the_corpus(figures):
    assert figures["parser_errors"] == 0


def test_reason_agreement(figures):
    assert figures["reason_agreement"] >= 0.965


@pytest.mark.parametrize(("half", "least"), [("even", 0.975), ("odd", 0.95)])
def test_reason_agreement_on_each_half(corpus, scorer, half, least):
    # Halves share no message (see score_bounces.half_of): a rule fitted to one file shows here.
    found, _problems = scorer.score(corpus, half, passes=1)
    assert found["reason_agreement"] >= least


def test_hard_soft_agreement(figures):
    assert figures["hard_soft_agreement"] >= 0.985


def test_speed(figures):
    assert figures["files_per_second"] >= 200


@pytest.fixture(scope="module")
def foreign_figures(foreign_corpus: Path, scorer) -> dict:
    found, _problems = scorer.score(foreign_corpus, passes=1)
    return found


def test_foreign_corpus_recipients(foreign_figures):
    assert foreign_figures["recall"] >= 0.975
    assert foreign_figures["precision"] >= 0.985
    assert foreign_figures["false_positives"] == 0
    assert foreign_figures["parser_errors"] == 0


def test_foreign_corpus_reasons(foreign_figures):
    assert foreign_figures["reason_agreement"] >= 0.95
    assert foreign_figures["hard_soft_agreement"] >= 0.975
