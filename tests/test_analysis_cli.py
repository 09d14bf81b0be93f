"""``qalign analyze``, run as a user would: on a vote file and on a study in the database."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
from PIL import Image
from typer.testing import CliRunner

from toolkit.cli import app

from conftest import DATA

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_analyze_csv_writes_the_contract_files_and_report(tmp_path):
    out, raters, report = tmp_path / "items.csv", tmp_path / "raters.csv", tmp_path / "report"
    result = run(
        "analyze",
        DATA / "nflx_public_raw_votes.csv",
        "--model",
        "mle",
        "--out",
        out,
        "--raters-out",
        raters,
        "--report",
        report,
        "--splits",
        20,
    )
    assert result.exit_code == 0, result.output
    items = pd.read_csv(out)
    assert list(items.columns) == ["item", "score", "ci_low", "ci_high", "n"]
    assert len(items) == 79 and (items["n"] == 26).all()
    reference = json.loads((DATA / "nflx_public_sureal_reference.json").read_text())["MLE"]
    expected = pd.Series(reference["quality_scores"]).reindex(items["item"]).to_numpy()
    np.testing.assert_allclose(items["score"], expected, atol=1e-6)

    table = pd.read_csv(raters, keep_default_na=False)
    assert list(table.columns) == ["rater", "bias", "inconsistency", "rejected", "reason"]
    assert len(table) == 26 and not table["rejected"].astype(str).eq("True").any()

    text = (report / "report.md").read_text()
    assert "MLE subject model" in text and "Content ambiguity" in text and "Split-half agreement" in text
    assert "## Votes" in text and "Widest intervals" in text
    for png in ("raters.png", "scores.png"):
        assert (report / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "noise ceiling" in result.output


def test_analyze_bt500_rejection_and_custom_columns(tmp_path):
    votes = pd.read_csv(DATA / "nflx_public_raw_votes.csv").rename(
        columns={"item": "clip", "rater": "subject", "vote": "score"}
    )
    path = tmp_path / "votes.parquet"
    votes.to_parquet(path)
    out, raters = tmp_path / "items.csv", tmp_path / "raters.csv"
    result = run(
        "analyze",
        path,
        "--model",
        "bt500",
        "--out",
        out,
        "--raters-out",
        raters,
        "--item-col",
        "clip",
        "--rater-col",
        "subject",
        "--vote-col",
        "score",
        "--splits",
        0,
    )
    assert result.exit_code == 0, result.output
    table = pd.read_csv(raters, keep_default_na=False).set_index("rater")
    assert table["rejected"].astype(str).eq("True").sum() == 1
    assert table.loc["s02", "reason"].startswith("BT.500:")
    assert (pd.read_csv(out)["n"] == 25).all()
    assert "s02" in result.output


def test_bad_votes_fail_with_one_readable_line(tmp_path):
    path = tmp_path / "votes.csv"
    pd.DataFrame({"item": ["a", "a", "b"], "rater": ["x", "y", "x"], "vote": [3, 7, 4]}).to_csv(path, index=False)
    proc = subprocess.run(
        [sys.executable, "-m", "toolkit.cli", "analyze", str(path), "--out", str(tmp_path / "o.csv")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error:") and "vote 7" in proc.stderr and "'y'" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "o.csv").exists()
    assert run("analyze", "--out", tmp_path / "o.csv").exit_code != 0  # neither a file nor --study


def test_analyze_a_study_in_the_database(tmp_path):
    media = tmp_path / "media"
    media.mkdir()
    for i in range(6):
        Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(media / f"p{i}.png")
    db = f"sqlite:///{tmp_path / 's.db'}"
    assert run("db", "upgrade", "--db", db).exit_code == 0
    assert run("study", "create", "pilot", "--media", media, "--db", db).exit_code == 0
    # p5.png is part of the study but nobody has rated it yet.
    rows = [(f"p{i}.png", f"r{k}", int(np.clip(1 + i - (k % 2), 1, 5))) for i in range(5) for k in range(5)]
    votes = tmp_path / "votes.csv"
    pd.DataFrame(rows, columns=["item", "rater", "vote"]).to_csv(votes, index=False)
    assert run("study", "import", "pilot", votes, "--db", db).exit_code == 0

    out = tmp_path / "items.csv"
    result = run("analyze", "--study", "pilot", "--db", db, "--model", "p913", "--out", out, "--splits", 10)
    assert result.exit_code == 0, result.output
    items = pd.read_csv(out).set_index("item")
    assert list(items.index) == [f"p{i}.png" for i in range(5)] and (items["n"] == 5).all()
    assert items["score"].is_monotonic_increasing
    assert "1 study item(s) have no votes yet" in result.output
    missing = run("analyze", "--study", "nope", "--db", db, "--out", out)
    assert missing.exit_code != 0 and "no study named 'nope'" in str(missing.exception)
