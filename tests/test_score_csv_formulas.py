"""The score CSV and the ablation's predictions neutralise spreadsheet formulas, and a resumed
run still matches every path exactly (the score CSV's text cells are unescaped on reading)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from toolkit.scoring import Scorer, read_results
from toolkit.scoring.results import (
    ResultAppender,
    ScoredChunk,
    output_columns,
    read_frame_counts,
    write_frame_counts,
    write_results,
)

# Every start a spreadsheet runs as a formula, a leading quote (escaped once more), and a plain name.
AWKWARD = ["=cmd.jpg", "-x.jpg", "+1.jpg", "@sum.jpg", "'quoted.jpg", "plain.jpg"]


@pytest.fixture(scope="module")
def scorer() -> Scorer:
    from toolkit.models.loading import load_backbone

    return Scorer(load_backbone("tiny"), batch_size=4, progress=False)


def cells(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


def test_scored_formula_names_are_quoted_and_a_resumed_run_skips_them(
    scorer: Scorer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for i, name in enumerate(AWKWARD):
        Image.fromarray(np.full((24, 32, 3), 40 * i, dtype=np.uint8)).save(name, format="PNG")
    out = tmp_path / "scores.csv"
    first = scorer.score(AWKWARD, out=out)
    assert first["path"].tolist() == AWKWARD and (first["error"] == "").all()
    written = {row[0] for row in cells(out)[1:]}
    assert {"'=cmd.jpg", "'-x.jpg", "'+1.jpg", "'@sum.jpg", "''quoted.jpg", "plain.jpg"} == written
    assert read_results(out)["path"].tolist() == AWKWARD  # raw paths back

    seen: list[int] = []
    real = type(scorer.backbone).level_logits.__get__(scorer.backbone)
    monkeypatch.setattr(scorer.backbone, "level_logits", lambda batch: seen.append(1) or real(batch))
    second = scorer.score(AWKWARD, out=out)
    assert seen == []  # nothing rescored
    assert second["path"].tolist() == AWKWARD
    pd.testing.assert_frame_equal(second.reset_index(drop=True), first.reset_index(drop=True))
    assert len(cells(out)) == 1 + len(AWKWARD)  # no duplicate rows
    Image.fromarray(np.zeros((24, 32, 3), dtype=np.uint8)).save("=new.png")
    third = scorer.score([*AWKWARD, "=new.png"], out=out)
    assert len(seen) == 1 and third["path"].tolist() == [*AWKWARD, "=new.png"]  # the spy sees a new file


def test_appended_and_rewritten_rows_round_trip(tmp_path: Path) -> None:
    out = tmp_path / "scores.csv"
    paths = [*AWKWARD, "line\rbreak.jpg"]
    probs = np.full((len(paths), 5), 0.2)
    probs[1] = np.nan
    errors = [""] * len(paths)
    errors[1] = "=cannot read"
    appender = ResultAppender(out, output_columns(False))
    appender.append(ScoredChunk(paths, probs, errors))
    back = read_results(out)
    assert back["path"].tolist() == paths and back["error"].tolist() == errors
    raw = cells(out)
    assert raw[2][0] == "'-x.jpg" and raw[2][-1] == "'=cannot read"
    assert raw[-1][0] == "line\rbreak.jpg"  # quoted: a CR cannot start a new spreadsheet row

    write_results(back, out)  # the DataFrame path (merging, rewriting) writes the same cells
    assert cells(out) == raw
    assert read_results(out)["path"].tolist() == paths
    ResultAppender(out, output_columns(True)).append(back.assign(gt_score=-1.5))
    again = read_results(out)
    assert again["path"].tolist() == paths * 2 and again["gt_score"].iloc[-1] == -1.5


def test_frame_counts_keep_raw_paths(tmp_path: Path) -> None:
    side = tmp_path / "scores.csv.frames.csv"
    counts = {"=clip.mp4": (7, 8), "'q.mp4": (8, 8)}
    write_frame_counts(side, counts)
    assert {row[0] for row in cells(side)[1:]} == {"'=clip.mp4", "''q.mp4"}
    assert read_frame_counts(side) == counts


def test_ablation_predictions_are_formula_safe(tmp_path: Path) -> None:
    from toolkit.training import TrainConfig
    from toolkit.training.ablation import PREDICTIONS_CSV, AblationResult, ArmResult, _write

    arm = ArmResult("score", "direct score (score)", tmp_path / "runs" / "score", 1, 0.1, 0.5, 0, ["=2+2", "4"])
    result = AblationResult(
        tmp_path,
        ['=HYPERLINK("x").jpg', "b.jpg"],
        np.array([3.25, 1.0]),
        {"levels (ce)": np.array([-0.5, 4.123456789]), "direct score (score)": np.array([3.0, 4.0])},
        [arm],
        [],
    )
    _write(result, TrainConfig(model="tiny", data="d.json"))
    rows = cells(tmp_path / PREDICTIONS_CSV)
    assert rows[0] == ["item", "mos", "levels (ce)", "direct score (score)", "score_answer"]
    assert rows[1] == ['\'=HYPERLINK("x").jpg', "3.25", "-0.5", "3", "'=2+2"]  # a negative number stays a number
    assert rows[2] == ["b.jpg", "1", "4.12346", "4", "4"]


def test_qalign_eval_reads_the_raw_paths_of_a_formula_safe_score_file(
    scorer: Scorer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from toolkit.evaluation.inputs import read_scores

    monkeypatch.chdir(tmp_path)
    for i, name in enumerate(AWKWARD):
        Image.fromarray(np.full((24, 32, 3), 40 * i, dtype=np.uint8)).save(name, format="PNG")
    scorer.score(AWKWARD, out=tmp_path / "scores.csv")
    assert cells(tmp_path / "scores.csv")[1][0] == "'=cmd.jpg"
    # matched against the ground truth by these names
    assert read_scores(tmp_path / "scores.csv").frame["path"].tolist() == AWKWARD
    # A score table from elsewhere (no record of `qalign score` beside it) is taken as written.
    (tmp_path / "other.csv").write_text("path,score\n'quoted.jpg,3.5\n")
    assert read_scores(tmp_path / "other.csv").frame["path"].tolist() == ["'quoted.jpg"]
