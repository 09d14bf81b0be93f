"""The `qalign db` and `qalign study` commands, run in-process as a user would type them."""

import pandas as pd
from PIL import Image
from typer.testing import CliRunner

from toolkit.cli import app

runner = CliRunner()


def run(*args):
    return runner.invoke(app, list(args))


def test_study_lifecycle(tmp_path):
    media = tmp_path / "media"
    media.mkdir()
    for i in range(3):
        Image.new("RGB", (8, 8), (i * 80, 0, 0)).save(media / f"p{i}.png")
    db = f"sqlite:///{tmp_path / 's.db'}"
    assert run("db", "upgrade", "--db", db).exit_code == 0
    result = run("study", "create", "pilot", "--media", str(media), "--db", db)
    assert result.exit_code == 0, result.output
    assert "3 items added" in result.output
    result = run("study", "add-rater", "pilot", "ann", "--db", db)
    assert "token:" in result.output

    votes = tmp_path / "votes.csv"
    pd.DataFrame({"file": ["p0.png", "p1.png", "p0.png"], "who": ["x", "x", "y"], "score": [5, 1, 4]}).to_csv(
        votes, index=False
    )
    result = run(
        "study",
        "import",
        "pilot",
        str(votes),
        "--item-col",
        "file",
        "--rater-col",
        "who",
        "--vote-col",
        "score",
        "--db",
        db,
    )
    assert result.exit_code == 0, result.output
    assert "3 votes imported" in result.output

    out = tmp_path / "agg.csv"
    assert run("study", "export", "pilot", "--out", str(out), "--aggregate", "--db", db).exit_code == 0
    agg = pd.read_csv(out).set_index("item")
    assert agg.loc["p0.png", "mos"] == 4.5 and agg.loc["p2.png", "n"] == 0
    raw = tmp_path / "raw.json"
    assert run("study", "export", "pilot", "--out", str(raw), "--db", db).exit_code == 0
    assert len(pd.read_json(raw)) == 3


def test_errors_are_one_readable_line(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "toolkit.cli", "study", "list", "--db", f"sqlite:///{tmp_path / 'none.db'}"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: no database at")
    assert "Traceback" not in proc.stderr


def test_convert_reads_a_study_from_the_database(tmp_path):
    import json

    media = tmp_path / "media"
    media.mkdir()
    rows = []
    for i in range(6):
        Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(media / f"s{i}.png")
        for r in range(4):
            rows.append({"item": f"s{i}.png", "rater": f"r{r}", "vote": 1 + (i + r) % 5})
    db = f"sqlite:///{tmp_path / 's.db'}"
    run("db", "upgrade", "--db", db)
    run("study", "create", "conv", "--media", str(media), "--db", db)
    votes = tmp_path / "votes.csv"
    pd.DataFrame(rows).to_csv(votes, index=False)
    assert run("study", "import", "conv", str(votes), "--db", db).exit_code == 0
    out = tmp_path / "data"
    result = run("convert", "--study", "conv", "--out", str(out), "--split", "train=0.5,test=0.5", "--db", db)
    assert result.exit_code == 0, result.output
    records = json.loads((out / "train.json").read_text()) + json.loads((out / "test.json").read_text())
    assert len(records) == 6
    mos = pd.DataFrame(rows).groupby("item")["vote"].mean()
    for record in records:
        assert record["gt_score"] == mos[record["image"]]
    result = run(
        "convert", "--study", "conv", "--subject-model", "mle_co", "--out", str(tmp_path / "mle.json"), "--db", db
    )
    assert result.exit_code == 0, result.output
    assert len(json.loads((tmp_path / "mle.json").read_text())) == 6
    assert run("convert", "--out", str(tmp_path / "x.json"), "--db", db).exit_code != 0
