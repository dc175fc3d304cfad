"""bounce-parse: the JSON Lines promised in shared/interfaces.md, and the readable table."""

from __future__ import annotations

import json
from pathlib import Path

from bounce_parser.cli import main

INTERFACE_KEYS = {
    "file", "kind", "recipient", "action", "status", "reason", "hard", "diagnostic", "feedback_type", "message_id",
}


def _json_lines(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_json_lines_have_exactly_the_interface_keys(corpus: Path, capsys):
    path = str(corpus / "samples" / "maildir" / "bsd" / "lhost-postfix-13.eml")
    assert main(["--json", path]) == 0
    lines = _json_lines(capsys)
    assert len(lines) == 2
    for line in lines:
        assert set(line) == INTERFACE_KEYS
        assert line["file"] == path
        assert line["kind"] == "dsn"
        assert line["recipient"] == line["recipient"].lower()
        assert isinstance(line["hard"], bool)
    assert {line["reason"] for line in lines} <= {"mailboxfull", "userunknown"}


def test_file_is_the_path_as_given_and_mbox_files_give_every_message(corpus: Path, capsys, monkeypatch):
    monkeypatch.chdir(corpus / "samples")
    assert main(["--json", "mailbox/mbox-0", "maildir/bsd/arf-02.eml"]) == 0
    lines = _json_lines(capsys)
    assert [line["file"] for line in lines] == ["mailbox/mbox-0"] * 37 + ["maildir/bsd/arf-02.eml"]
    assert lines[-1]["kind"] == "arf"
    assert (lines[-1]["reason"], lines[-1]["feedback_type"]) == ("feedback", "abuse")


def test_a_file_without_a_bounce_prints_nothing(corpus: Path, capsys):
    assert main(["--json", str(corpus / "samples" / "maildir" / "not" / "is-not-bounce-01.eml")]) == 0
    assert capsys.readouterr().out == ""


def test_unreadable_file_is_reported_and_the_others_still_parsed(corpus: Path, capsys, tmp_path: Path):
    good = str(corpus / "samples" / "maildir" / "bsd" / "lhost-postfix-33.eml")
    assert main(["--json", str(tmp_path / "missing.eml"), good]) == 1
    captured = capsys.readouterr()
    assert "missing.eml" in captured.err
    assert [json.loads(line)["file"] for line in captured.out.splitlines()] == [good]


def test_table_output(corpus: Path, capsys):
    path = str(corpus / "samples" / "maildir" / "bsd" / "lhost-postfix-33.eml")
    assert main([path]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split("\t")[:3] == ["file", "kind", "recipient"]
    assert row.split("\t")[:5] == [path, "dsn", "userunknown@libsisimai.org", "userunknown", "hard"]


def test_a_directory_stands_for_the_files_under_it_in_name_order(corpus: Path, capsys, tmp_path: Path):
    samples = corpus / "samples" / "maildir" / "bsd"
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "second.eml").write_bytes((samples / "lhost-postfix-33.eml").read_bytes())
    (tmp_path / "a.eml").write_bytes((samples / "lhost-postfix-13.eml").read_bytes())
    (tmp_path / "c.eml").write_bytes((samples / "arf-02.eml").read_bytes())
    assert main(["--json", str(tmp_path)]) == 0
    files = [Path(line["file"]).relative_to(tmp_path).as_posix() for line in _json_lines(capsys)]
    assert files == ["a.eml", "a.eml", "c.eml", "b/second.eml"]
