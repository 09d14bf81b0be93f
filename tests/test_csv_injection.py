"""CSV and TSV output cannot carry spreadsheet formulas (OWASP CSV injection); Parquet and JSON
keep the raw values."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from typer.testing import CliRunner

from toolkit.cli import app
from toolkit.io import csv_safe, csv_safe_value, csv_text, csv_unescape_value, write_table
from toolkit.store import Store, import_votes
from toolkit.store.setup import StudySetup, setup_study

from fixtures_ui import sqlite_url

FORMULAS = ['=HYPERLINK("http://x","y")', "+1", "-2", "@a"]
HOSTILE = [*FORMULAS, "\tb", "\rc"]  # the store strips ids, so only tables get the last two
RATERS = [*HOSTILE, "plain"]


def _cells(path: Path, column: str) -> list[str]:
    with open(path, newline="", encoding="utf-8") as handle:
        return [row[column] for row in csv.DictReader(handle)]


def _votes() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = [
        {"item": f"{i}.png", "rater": rater, "vote": int(rng.integers(1, 6))}
        for i in range(6)
        for rater in [*FORMULAS, "plain"]
    ]
    return pd.DataFrame(rows)


def _assert_neutralised(cells: list[str], hostile: list[str] = FORMULAS) -> None:
    for name in hostile:
        assert "'" + name in cells, (name, cells)
    assert "plain" in cells
    assert not any(c.startswith(("=", "+", "-", "@", "\t", "\r")) for c in cells)


def test_write_table_quotes_text_and_keeps_numbers_and_parquet(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "rater": RATERS,
            "bias": [-1.5, 2.0, -0.25, 0.0, 1.0, -3.0, 0.5],
            "votes": [-1, 2, 3, 4, 5, 6, 7],
            "kind": pd.Categorical(["-x", "a", "a", "a", "a", "a", "a"]),
        }
    )
    out = write_table(frame, tmp_path / "t.csv")
    _assert_neutralised(_cells(out, "rater"), HOSTILE)
    # A CR inside a cell is quoted, so no spreadsheet starts a row (and a formula) there.
    assert _cells(write_table(pd.DataFrame({"c": ["x\r=1+2"]}), tmp_path / "cr.csv"), "c") == ["x\r=1+2"]
    back = pd.read_csv(out)
    assert back["bias"].tolist() == frame["bias"].tolist()  # negative numbers are not text
    assert back["votes"].tolist() == frame["votes"].tolist()
    assert _cells(out, "kind")[0] == "'-x"
    assert "rater,bias,votes,kind" in csv_text(frame)
    for suffix in (".parquet", ".json"):
        raw = pd.read_parquet if suffix == ".parquet" else pd.read_json
        assert raw(write_table(frame, tmp_path / f"t{suffix}"))["rater"].tolist() == RATERS
    pivot = frame.set_index("rater")[["bias"]].T  # rater names as column labels
    assert all(c.startswith("'") for c in csv_safe(pivot).columns[:6])
    assert frame["rater"].tolist() == RATERS  # the caller's frame is not changed


def test_study_export_and_analyze_csvs_are_formula_safe(tmp_path: Path) -> None:
    votes = _votes()
    media = tmp_path / "media"
    media.mkdir()
    for i in range(6):
        Image.fromarray(np.full((8, 8, 3), 40 * i, dtype=np.uint8)).save(media / f"{i}.png")
    (media / "manifest.csv").write_text("path\n" + "".join(f"{i}.png\n" for i in range(6)))
    url = sqlite_url(tmp_path)
    store = Store(url)
    with store.session() as session:
        study, _ = setup_study(session, StudySetup(name="s", media_root=media, manifest=media / "manifest.csv"))
        import_votes(session, study, votes)
    store.dispose()
    runner = CliRunner()

    exported = tmp_path / "votes.csv"
    result = runner.invoke(app, ["study", "export", "s", "--out", str(exported), "--db", url])
    assert result.exit_code == 0, result.output
    _assert_neutralised(_cells(exported, "rater"))
    parquet = tmp_path / "votes.parquet"
    assert runner.invoke(app, ["study", "export", "s", "--out", str(parquet), "--db", url]).exit_code == 0
    assert set(pd.read_parquet(parquet)["rater"]) == {*FORMULAS, "plain"}

    votes_csv = tmp_path / "in.csv"
    votes.to_csv(votes_csv, index=False)
    raters = tmp_path / "raters.csv"
    args = ["analyze", str(votes_csv), "--out", str(tmp_path / "items.csv"), "--raters-out", str(raters)]
    result = runner.invoke(app, [*args, "--splits", "0", "--model", "p913"])
    assert result.exit_code == 0, result.output
    _assert_neutralised(_cells(raters, "rater"))
    table = pd.read_csv(raters)
    assert pd.api.types.is_float_dtype(table["bias"]) and (table["bias"] < 0).any()  # numbers stay numbers


def test_the_quoting_can_be_undone_exactly() -> None:
    for value in [*HOSTILE, "plain", "'quoted", "''", "'", "", "a=b", 3, -2.5, None]:
        assert csv_unescape_value(csv_safe_value(value)) == value
    assert csv_safe_value("'=x") == "''=x"
