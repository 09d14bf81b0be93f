"""`qalign study` and `qalign db` on awkward input: names with rich markup, taken names, bad URLs."""

from __future__ import annotations

import sys

import pytest
from PIL import Image
from typer.testing import CliRunner

from toolkit.cli import app, main

runner = CliRunner()


def fails(capfd, monkeypatch, *argv):
    """The exit code and what ``qalign ARGV`` printed, run as the console script runs it."""
    monkeypatch.setattr(sys, "argv", ["qalign", *argv])
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capfd.readouterr()
    return exit_info.value.code, (captured.out + captured.err).strip()


def run(*args):
    return runner.invoke(app, list(args))


def study_db(tmp_path, name="pilot"):
    media = tmp_path / "media"
    media.mkdir(exist_ok=True)
    Image.new("RGB", (8, 8)).save(media / "a.png")
    db = f"sqlite:///{tmp_path / 's[1].db'}"
    assert run("db", "upgrade", "--db", db).exit_code == 0
    result = run("study", "create", name, "--media", str(media), "--db", db)
    assert result.exit_code == 0, result.output
    return db


def test_names_with_markup_are_printed_as_typed(tmp_path):
    db = study_db(tmp_path, "x[/]y[bold]")
    result = run("study", "add-rater", "x[/]y[bold]", "a[/]b", "--db", db)
    assert result.exit_code == 0, result.output
    assert "rater a[/]b token: " in result.output
    listed = run("study", "list", "--db", db)
    assert listed.exit_code == 0 and "x[/]y[bold]" in listed.output


def test_taken_rater_name_is_one_line(tmp_path, capfd, monkeypatch):
    db = study_db(tmp_path)
    assert run("study", "add-rater", "pilot", "ann", "--db", db).exit_code == 0
    code, output = fails(capfd, monkeypatch, "study", "add-rater", "pilot", "ann", "--db", db)
    assert (code, output) == (2, "error: a rater named 'ann' already exists in study 'pilot'")
