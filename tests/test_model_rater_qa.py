"""Rater QA against a model's scores: the per-rater correlations against a plain per-rater
computation, the both-disagree flag, item matching, and ``qalign analyze --scores``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from typer.testing import CliRunner

from toolkit.analysis.model_agreement import (
    AGREEMENT_COLUMNS,
    ModelAgreementConfig,
    match_model_scores,
    model_agreement,
    rater_model_agreement,
)
from toolkit.analysis.votes import prepare_votes
from toolkit.cli import app
from toolkit.errors import InputError

runner = CliRunner()


def study(seed: int = 0, n_items: int = 60) -> tuple[pd.DataFrame, np.ndarray]:
    """Ten careful raters on every item, one who answers at random, one who answered only 8 items
    at random; and the latent quality of each item."""
    rng = np.random.default_rng(seed)
    quality = rng.uniform(1, 5, n_items)
    rows = []
    for r in range(10):
        for i in range(n_items):
            rows.append((f"img{i:03d}.png", f"careful{r}", quality[i] + rng.normal(0, 0.5)))
    for i in range(n_items):
        rows.append((f"img{i:03d}.png", "random", rng.uniform(0.5, 5.5)))
    for i in range(8):
        rows.append((f"img{i:03d}.png", "brief", rng.uniform(0.5, 5.5)))
    frame = pd.DataFrame(rows, columns=["item", "rater", "vote"])
    frame["vote"] = np.clip(np.rint(frame["vote"]), 1, 5).astype(int)
    return frame, quality


def test_correlations_equal_a_plain_per_rater_computation() -> None:
    frame, quality = study()
    # Repeated votes: a rater's mean vote on an item counts once.
    frame = pd.concat([frame, frame[frame["rater"] == "careful3"].head(5).assign(vote=1)], ignore_index=True)
    votes = prepare_votes(frame)
    scores = pd.Series(quality + np.random.default_rng(9).normal(0, 0.4, len(quality)), index=votes.items)
    scores = scores.drop(votes.items[:4])  # four items the model did not score
    table = rater_model_agreement(votes, scores)
    assert list(table.columns) == list(AGREEMENT_COLUMNS) and list(table.index) == sorted(frame["rater"].unique())

    for rater, own in frame.groupby("rater"):
        mine = own.groupby("item")["vote"].mean()
        others = frame[frame["rater"] != rater].groupby("item")["vote"].mean()
        common = [i for i in mine.index if i in others.index and i in scores.index]
        assert table.at[rater, "common_items"] == len(common)
        expected_model = stats.spearmanr(mine[common], scores[common]).statistic
        expected_peers = stats.spearmanr(mine[common], others[common]).statistic
        assert table.at[rater, "srcc_model"] == pytest.approx(expected_model, abs=1e-12)
        assert table.at[rater, "srcc_peers"] == pytest.approx(expected_peers, abs=1e-12)


def test_only_raters_who_disagree_with_both_the_model_and_their_peers_are_flagged() -> None:
    frame, quality = study()
    votes = prepare_votes(frame)
    good = pd.Series(quality, index=votes.items)
    table = rater_model_agreement(votes, good)
    assert table.index[table["disagrees_with_both"]].tolist() == ["random"]
    assert (table.loc[table.index.str.startswith("careful"), ["srcc_model", "srcc_peers"]] > 0.8).all().all()
    assert table.at["brief", "common_items"] == 8  # as random, but too few items to judge

    # A model that knows nothing: the careful raters still agree with each other, so only the
    # rater who disagrees with everyone is flagged.
    useless = pd.Series(np.random.default_rng(1).permutation(quality), index=votes.items)
    table = rater_model_agreement(votes, useless)
    assert table.index[table["disagrees_with_both"]].tolist() == ["random"]
    assert (table.loc[table.index.str.startswith("careful"), "srcc_model"].abs() < 0.5).all()

    # The thresholds and the minimum item count are the caller's.
    lenient = rater_model_agreement(votes, good, ModelAgreementConfig(min_srcc_model=-1.0))
    assert not lenient["disagrees_with_both"].any()
    strict = ModelAgreementConfig(min_srcc_model=1.01, min_srcc_peers=1.01)  # every defined correlation fails
    assert "brief" not in rater_model_agreement(votes, good, strict).query("disagrees_with_both").index
    few = rater_model_agreement(
        votes, good, ModelAgreementConfig(min_srcc_model=1.01, min_srcc_peers=1.01, min_items=5)
    )
    assert few["disagrees_with_both"].all()


def test_score_paths_match_item_ids_by_the_documented_rule() -> None:
    items = ["img000.png", "img001.png", "clip7", "sub/a.png", "other/a.png"]
    matched = match_model_scores(
        ["img000.png", "/data/study/img001.png", "/videos/clip7.mp4", "x/a.png"], [1.0, 2.0, 3.0, 4.0], items, 3
    )
    # Exact; by file name; by file name without extension; 'a.png' is ambiguous and stays unmatched.
    assert matched.scores.to_dict() == {"img000.png": 1.0, "img001.png": 2.0, "clip7": 3.0}
    assert matched.n_matched == 3 and matched.n_items == 5
    assert any("2 study item(s) have no model score" in n for n in matched.notes)

    with pytest.raises(InputError, match=r"only 1 of 5 study item\(s\) matched a scored path, at least 3 needed"):
        match_model_scores(["img000.png", "nothing.png"], [1.0, 2.0], items, 3)
    with pytest.raises(InputError, match="two scored paths match the same study item 'img000.png'"):
        match_model_scores(["img000.png", "./img000.png"], [1.0, 2.0], items, 1)


def test_model_agreement_reports_the_models_srcc_with_the_mos() -> None:
    frame, quality = study()
    votes = prepare_votes(frame)
    matched = match_model_scores(list(votes.items), quality, votes.items)
    qa = model_agreement(votes, matched)
    mos = frame.groupby("item")["vote"].mean().reindex(votes.items)
    assert qa.srcc_mos == pytest.approx(stats.spearmanr(quality, mos).statistic, abs=1e-12)
    assert qa.n_matched == qa.n_items == 60 and qa.flagged.index.tolist() == ["random"]


def write_inputs(folder: Path) -> tuple[Path, Path]:
    frame, quality = study()
    votes = folder / "votes.csv"
    frame.to_csv(votes, index=False)
    scores = folder / "scores.csv"
    items = sorted(frame["item"].unique())
    pd.DataFrame({"path": [f"/media/{i}" for i in items], "score": quality, "error": ""}).to_csv(scores, index=False)
    return votes, scores


def test_analyze_with_scores_adds_columns_and_a_report_section(tmp_path: Path) -> None:
    votes, scores = write_inputs(tmp_path)
    raters, report = tmp_path / "raters.csv", tmp_path / "report"
    args = ["analyze", votes, "--model", "mos", "--out", tmp_path / "items.csv", "--raters-out", raters]
    result = runner.invoke(
        app, [str(a) for a in [*args, "--report", report, "--scores", scores, "--splits", 0, "--reliability-boot", 50]]
    )
    assert result.exit_code == 0, result.output
    table = pd.read_csv(raters, keep_default_na=False).set_index("rater")
    assert list(table.columns) == ["bias", "inconsistency", "rejected", "reason", *AGREEMENT_COLUMNS]
    assert table.index[table["disagrees_with_both"].astype(str) == "True"].tolist() == ["random"]
    assert table.at["careful0", "common_items"] == 60 and table.at["brief", "common_items"] == 8

    text = (report / "report.md").read_text()
    assert "## Raters against the model" in text and "matched 60 of 60 study items" in text
    assert "Krippendorff's alpha (ordinal" in text and "ICC(2,k)" in text
    data = json.loads((report / "report.json").read_text())
    assert data["model_agreement"]["flagged"] == ["random"] and data["model_agreement"]["n_matched"] == 60
    assert data["krippendorff_alpha"]["n_boot"] == 50 and data["icc"]["complete_design"] is False
    assert data["split_half"] is None  # --splits 0
    assert "raters disagreeing with model and peers" in result.output

    # Without --scores the raters table keeps exactly its five columns.
    plain = runner.invoke(app, [str(a) for a in [*args, "--splits", 0, "--reliability-boot", 0]])
    assert plain.exit_code == 0, plain.output
    assert list(pd.read_csv(raters).columns) == ["rater", "bias", "inconsistency", "rejected", "reason"]


def test_a_score_file_that_matches_too_few_items_fails_in_one_line(tmp_path: Path) -> None:
    votes, _ = write_inputs(tmp_path)
    scores = tmp_path / "other.csv"
    pd.DataFrame({"path": ["a.png", "b.png"], "score": [1.0, 2.0]}).to_csv(scores, index=False)
    out = tmp_path / "items.csv"
    result = runner.invoke(app, ["analyze", str(votes), "--out", str(out), "--scores", str(scores), "--splits", "0"])
    assert isinstance(result.exception, InputError)
    message = str(result.exception)
    assert "only 0 of 60 study item(s) matched a scored path" in message and "\n" not in message
    missing = runner.invoke(app, ["analyze", str(votes), "--out", str(out), "--scores", str(tmp_path / "no.csv")])
    assert isinstance(missing.exception, InputError) and "file not found" in str(missing.exception)
