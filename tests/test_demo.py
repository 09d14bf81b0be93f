"""The whole loop end to end, on a smaller configuration of the demo."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from toolkit.demo import DemoConfig, run_demo
from toolkit.errors import InputError
from toolkit.store import Store, get_study, votes_frame


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "run"
    config = DemoConfig(
        out_dir=out, n_sources=8, n_raters=12, n_careless=2, votes_per_item=8, train_steps=40, n_boot=200, seed=3
    )
    lines: list[str] = []
    return run_demo(config, log=lines.append), config, lines


def test_every_vote_reaches_the_store_once(demo):
    result, config, _ = demo
    store = Store(f"sqlite:///{result.out_dir / 'study.db'}")
    with store.session() as s:
        votes = votes_frame(s, get_study(s, "demo"))
    store.dispose()
    assert len(votes) == result.n_votes == result.n_items * config.votes_per_item
    assert not votes.duplicated(["item", "rater"]).any()
    assert votes["rater"].nunique() <= config.n_raters


def test_split_is_by_scene_and_mos_comes_from_the_votes(demo):
    result, _, _ = demo
    train = json.loads((result.out_dir / "data" / "train.json").read_text())
    test = json.loads((result.out_dir / "data" / "test.json").read_text())
    scene = lambda path: path.split("_g")[0]  # noqa: E731
    assert {scene(r["image"]) for r in train}.isdisjoint({scene(r["image"]) for r in test})
    assert len(train) == result.n_train and len(test) == result.n_test
    store = Store(f"sqlite:///{result.out_dir / 'study.db'}")
    with store.session() as s:
        mos = votes_frame(s, get_study(s, "demo")).groupby("item")["vote"].mean()
    store.dispose()
    for record in test:
        assert record["gt_score"] == pytest.approx(mos[record["image"]])
        assert record["conversations"][1]["value"].startswith("The quality of the image is ")


def test_report_matches_the_scores_it_was_made_from(demo):
    result, _, lines = demo
    scores = pd.read_csv(result.report_dir / "heldout_scores.csv")
    assert len(scores) == result.n_test
    assert scores[["score_before", "score_after"]].apply(lambda c: c.between(1, 5)).all().all()
    # fine-tuning changed the model
    assert not np.allclose(scores["score_before"], scores["score_after"])
    report = json.loads((result.report_dir / "report.json").read_text())
    after = report["sets"]["after fine-tuning"]["metrics"]["srcc"]
    assert after["value"] == pytest.approx(stats.spearmanr(scores["score_after"], scores["mos"])[0])
    assert after["ci_low"] <= after["value"] <= after["ci_high"]
    assert result.after["srcc"] == pytest.approx(after["value"])
    assert 0 < result.split_half_srcc <= 1
    assert report["noise_ceiling"]["value"] == pytest.approx(result.split_half_srcc)
    md = (result.report_dir / "report.md").read_text()
    assert "before fine-tuning" in md and "after fine-tuning" in md
    assert any(p.suffix == ".png" for p in result.report_dir.iterdir())
    assert any("tiny vision-language model" in line for line in lines)


def test_refuses_to_overwrite_a_folder_it_did_not_make(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(InputError, match="is not empty and was not written by qalign"):
        run_demo(DemoConfig(out_dir=tmp_path))
    assert (tmp_path / "precious.txt").exists()
