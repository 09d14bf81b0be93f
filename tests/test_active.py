"""Active learning: ranking by uncertainty and disagreement, pushing the ranking into the
assignment queue, and the ``qalign suggest`` command."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sqlalchemy import inspect, select
from typer.testing import CliRunner

from toolkit.active import RankingOptions, mos_half_width, push_priorities, rank_items, suggest
from toolkit.cli import app
from toolkit.errors import InputError
from toolkit.levels import LEVELS
from toolkit.store import Store, add_rater, get_study, import_votes, rater_for_token
from toolkit.store.assignment import next_step, order_keys, submit_vote
from toolkit.store.engine import make_engine
from toolkit.store.migrate import downgrade, head_revision, upgrade
from toolkit.store.schema import Item

from fixtures_ui import make_study, sqlite_url

LN5 = np.log(5)


def hand_made() -> tuple[pd.DataFrame, pd.DataFrame]:
    scores = pd.DataFrame(
        {
            "item": ["a", "b", "c", "d", "e"],
            "score": [3.0, 4.0, 3.0, 2.5, 1.0],
            "entropy": [LN5, 0.0, 0.5 * LN5, 0.5 * LN5, LN5],
        }
    )
    ratings = pd.DataFrame({"item": ["b", "c", "e"], "n": [4, 10, 15], "mos": [2.0, 3.0, 4.0], "sd": [0.0, 1.0, 1.0]})
    return scores, ratings


def test_ranking_order_on_a_hand_made_table():
    scores, ratings = hand_made()
    ranked = rank_items(scores, ratings, RankingOptions(target_votes=15))
    # a: uniform, unrated -> 1.0; b: certain but 2 levels off a unanimous MOS of 4 votes;
    # c and d: half-certain, c agrees with its MOS, d unrated -> tie, fewer votes first; e: complete.
    assert ranked["item"].tolist() == ["a", "b", "d", "c"]
    assert ranked["rank"].tolist() == [1, 2, 3, 4]
    b = ranked.set_index("item").loc["b"]
    pooled_sd = np.sqrt((3 * 0.0**2 + 0.8**2) / 4)  # one prior vote of SD 0.8 pooled with 4 unanimous votes
    half = stats.t.ppf(0.975, 3) * pooled_sd / np.sqrt(4)
    assert b["ci_half_width"] == pytest.approx(half)
    assert b["disagreement"] == pytest.approx(2.0 / half)
    assert b["priority"] == pytest.approx(0 + (2.0 / half) / (1 + 2.0 / half))
    assert ranked.set_index("item").loc["a", "priority"] == pytest.approx(1.0)
    assert ranked.set_index("item").loc["c", "disagreement"] == 0.0

    only_disagreement = rank_items(scores, ratings, RankingOptions(uncertainty_weight=0, target_votes=15))
    assert only_disagreement["item"].tolist() == ["b", "a", "d", "c"]
    with_complete = rank_items(scores, ratings, RankingOptions(target_votes=15, include_complete=True))
    assert "e" in with_complete["item"].tolist()


def test_more_disagreeing_votes_weigh_more_than_one():
    half = mos_half_width(np.array([1, 2, 20]), np.array([0.0, 0.5, 0.5]))
    assert half[0] > half[1] > half[2] > 0  # one vote: widest interval; many votes: narrowest
    assert np.isnan(mos_half_width(np.array([0]), np.array([np.nan]))[0])
    scores = pd.DataFrame({"item": ["one", "many"], "score": [4.0, 4.0], "entropy": [0.2, 0.2]})
    ratings = pd.DataFrame({"item": ["one", "many"], "n": [1, 20], "mos": [2.0, 2.0], "sd": [0.0, 0.5]})
    assert rank_items(scores, ratings)["item"].tolist() == ["many", "one"]


def test_bad_inputs_are_refused():
    scores, ratings = hand_made()
    with pytest.raises(InputError, match="at least one ranking weight"):
        rank_items(scores, ratings, RankingOptions(uncertainty_weight=0, disagreement_weight=0))
    with pytest.raises(InputError, match="missing sd"):
        rank_items(scores, ratings.drop(columns="sd"))
    with pytest.raises(InputError, match="give a score table or a model"):
        suggest(None, out=None)


@pytest.fixture()
def study(tmp_path):
    url = sqlite_url(tmp_path)
    store = Store(url)
    make_study(store, tmp_path / "media", n_test=6, target_votes=3)
    yield store, url, tmp_path / "media"
    store.dispose()


def _new_rater(store, name):
    with store.session() as s:
        return add_rater(s, get_study(s, "pilot"), name)[1]


def _step(store, token):
    with store.session() as s:
        return next_step(s, rater_for_token(s, token))


def _default_last(store, token, exclude):
    """The test item this rater would be served last without priorities (own random order)."""
    with store.session() as s:
        rater = rater_for_token(s, token)
        items = s.execute(select(Item.id, Item.path).where(Item.role == "test")).all()
        ids = np.array([i for i, p in items if p not in exclude])
        paths = {i: p for i, p in items}
        return paths[int(ids[np.argmax(order_keys(rater, ids))])]


def test_push_puts_items_first_in_the_queue(study):
    store, _, _ = study
    first = _new_rater(store, "first")
    served = _step(store, first).item
    last = _default_last(store, first, exclude={served.path})
    with store.session() as s:
        assert push_priorities(s, get_study(s, "pilot"), [last]) == 1
    with store.session() as s:
        submit_vote(s, rater_for_token(s, first), served.item_id, 4)
    assert _step(store, first).item.path == last  # without the push it would come last

    second = _new_rater(store, "second")
    later = _default_last(store, second, exclude={served.path, last})
    runner_up = sorted({f"test_{k:02d}.png" for k in range(6)} - {served.path, last, later})[0]
    with store.session() as s:
        push_priorities(s, get_study(s, "pilot"), [later, runner_up])  # replaces the earlier push
        priorities = dict(s.execute(select(Item.path, Item.priority)).all())
    assert priorities[last] == 0 and priorities[later] == 2 and priorities[runner_up] == 1
    assert _step(store, second).item.path == later
    with store.session() as s, pytest.raises(InputError, match="not in study"):
        push_priorities(s, get_study(s, "pilot"), ["nowhere.png"])


def test_cli_suggest_ranks_writes_and_pushes(study, tmp_path):
    store, url, media = study
    items = [f"test_{k:02d}.png" for k in range(6)]
    votes = pd.DataFrame(
        {
            "item": ["test_00.png"] * 3 + ["test_01.png"] * 2 + ["test_02.png"] * 2,
            "rater": ["r1", "r2", "r3", "r1", "r2", "r1", "r2"],
            "vote": [5, 5, 5, 1, 1, 3, 3],
        }
    )
    with store.session() as s:
        import_votes(s, get_study(s, "pilot"), votes)
    probs = np.full((6, 5), 0.2)
    probs[1] = [0.9, 0.1, 0.0, 0.0, 0.0]  # confident "excellent" on an item two raters called bad
    probs[2] = [0.0, 0.0, 1.0, 0.0, 0.0]  # confident and right
    probs[3] = [0.0, 0.5, 0.5, 0.0, 0.0]
    probs[4] = [0.0, 0.0, 0.0, 0.0, 1.0]
    frame = pd.DataFrame(probs, columns=[f"p_{w}" for w in LEVELS])
    frame.insert(0, "path", [str(media / i) for i in items])  # absolute, as 'qalign score' writes them
    frame.insert(1, "score", probs @ np.array([5, 4, 3, 2, 1.0]))
    frame["error"] = ""
    frame.to_csv(tmp_path / "scores.csv", index=False)

    res = CliRunner().invoke(
        app,
        [
            "suggest",
            "--study",
            "pilot",
            "--db",
            url,
            "--scores",
            str(tmp_path / "scores.csv"),
            "--out",
            str(tmp_path / "ranked.csv"),
            "--top",
            "3",
            "--push",
        ],
    )
    assert res.exit_code == 0, res.output
    ranked = pd.read_csv(tmp_path / "ranked.csv")
    # test_00 has reached the target of 3; test_05 (uniform, unrated) and test_01 (disagreeing) lead.
    assert "test_00.png" not in set(ranked["item"])
    assert ranked["item"].tolist()[:2] == ["test_05.png", "test_01.png"]
    assert len(ranked) == 3 and "pushed 3 item(s)" in res.output
    token = _new_rater(store, "fresh")
    assert _step(store, token).item.path == "test_05.png"


def test_suggest_without_a_study_from_scores_and_votes(tmp_path):
    scores = pd.DataFrame(
        {"path": ["x/a.png", "x/b.png", "x/c.png"], "score": [4.5, 2.0, 3.0], "entropy": [0.1, 0.1, 0.1]}
    )
    votes = pd.DataFrame(
        {"item": ["a.png"] * 4 + ["b.png"] * 4, "rater": list("pqrs") * 2, "vote": [1, 1, 2, 1, 2, 2, 2, 2]}
    )
    result = suggest(scores=scores, votes=votes, out=tmp_path / "r.json")
    # a: the model says 4.5 where four raters say 1.25; b: agrees with its raters; c: unrated,
    # as uncertain as b, ranked before it on fewer votes.
    assert result.ranking["item"].tolist() == ["x/a.png", "x/c.png", "x/b.png"]
    assert result.ranking.set_index("item").loc["x/c.png", "n"] == 0
    assert pd.read_json(tmp_path / "r.json")["item"].tolist() == result.ranking["item"].tolist()


def test_priority_migration_upgrades_and_downgrades(tmp_path):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    upgrade(url)
    engine = make_engine(url)
    assert "priority" in {c["name"] for c in inspect(engine).get_columns("items")}
    downgrade(url, "0002")
    assert "priority" not in {c["name"] for c in inspect(make_engine(url)).get_columns("items")}
    engine.dispose()
    assert upgrade(url) == head_revision()


def test_suggest_scores_the_study_items_with_a_model(study, tmp_path):
    from toolkit.models.tiny import build_tiny_model
    from toolkit.scoring import Scorer

    store, url, media = study
    model = build_tiny_model(tmp_path / "tiny", seed=0)
    result = suggest("pilot", db_url=url, model=str(model), device="cpu", progress=False, out=tmp_path / "r.csv")
    ranked = result.ranking.set_index("item")
    assert sorted(ranked.index) == [f"test_{k:02d}.png" for k in range(6)] and (ranked["n"] == 0).all()
    direct = Scorer.from_pretrained(str(model), device="cpu", progress=False).score([str(media / "test_03.png")])
    assert ranked.loc["test_03.png", "entropy"] == pytest.approx(direct["entropy"].iloc[0])
    assert ranked.loc["test_03.png", "priority"] == pytest.approx(direct["entropy"].iloc[0] / LN5)
