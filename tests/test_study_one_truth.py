"""One study, one set of labels: every command that reads a study's votes leaves the raters the
admin excluded out, and gives every item the same MOS and the same level on the 1-5 scale."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from toolkit.active import study_state
from toolkit.analysis.study_labels import item_aggregates, study_label_table
from toolkit.cli import app
from toolkit.cli.eval import _votes
from toolkit.convert.study import convert_study
from toolkit.convert.study_dataset import export_study_dataset
from toolkit.errors import InputError
from toolkit.levels import LevelScale
from toolkit.qalign import COUNT_COLUMNS, LEVELS, answer_level
from toolkit.store import Store, get_study, import_votes, load_snapshot
from toolkit.store.overview import studies_overview
from toolkit.store.raters import set_rater_excluded

from fixtures_ui import make_study, sqlite_url

runner = CliRunner()

# Valid votes of eight raters on ten test items (an eleventh stays unrated). The means sit
# between 2.5 and 3.75, so levels on the data's own range would call the best items "excellent"
# and the worst "bad"; on the 1-5 scale they are poor, fair or good.
VALID = {
    "test_00.png": [3, 3, 3, 3, 2, 2, 2, 3],
    "test_01.png": [3, 3, 2, 2, 3, 2, 4, 4],
    "test_02.png": [1, 1, 3, 2, 3, 3, 5, 2],
    "test_03.png": [3, 5, 4, 3, 3, 1, 3, 3],
    "test_04.png": [2, 3, 3, 2, 3, 3, 3, 3],
    "test_05.png": [4, 4, 4, 2, 4, 3, 4, 2],
    "test_06.png": [4, 4, 2, 3, 4, 4, 2, 2],
    "test_07.png": [4, 3, 4, 4, 2, 4, 5, 3],
    "test_08.png": [3, 5, 4, 4, 4, 2, 3, 3],
    "test_09.png": [5, 4, 2, 2, 5, 5, 3, 4],
}
# The excluded rater votes against everyone else, gold item included.
TROLL = {item: 1 if sum(v) / len(v) > 3 else 5 for item, v in VALID.items()} | {"gold_00.png": 1}
UNRATED = "test_10.png"
N_RATERS = 8


def hand_mos() -> dict[str, float]:
    return {item: sum(v) / len(v) for item, v in VALID.items()}


def hand_level(mos: float) -> int:
    """Five equal intervals of [1, 5], left-open; 1 itself is bad (the Q-Align rule)."""
    return min(5, max(1, math.ceil(round((mos - 1) / 0.8, 9))))


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("one-truth")
    url = sqlite_url(tmp)
    store = Store(url)
    make_study(store, tmp / "media", n_test=len(VALID) + 1, n_gold=1, target_votes=10)
    rows = [{"item": item, "rater": f"r{k}", "vote": v} for item, votes in VALID.items() for k, v in enumerate(votes)]
    rows += [{"item": "gold_00.png", "rater": f"r{k}", "vote": 5} for k in range(N_RATERS)]
    rows += [{"item": item, "rater": "troll", "vote": v} for item, v in TROLL.items()]
    with store.session() as s:
        study = get_study(s, "pilot")
        import_votes(s, study, pd.DataFrame(rows))
        set_rater_excluded(s, study, "troll", True)
    store.dispose()
    return url, tmp


def json_labels(path) -> dict[str, tuple[float, int]]:
    records = json.loads(path.read_text())
    return {r["image"]: (r["gt_score"], answer_level(r["conversations"][1]["value"])) for r in records}


def test_the_snapshot_holds_valid_votes_only(study):
    url, _ = study
    snapshot = load_snapshot("pilot", url)
    assert snapshot.excluded_raters == ("troll",) and snapshot.raters_excluded == 1
    assert snapshot.excluded_votes == len(TROLL) and snapshot.raters_registered == N_RATERS + 1
    assert "troll" not in set(snapshot.votes["rater"])
    assert len(snapshot.votes) == N_RATERS * (len(VALID) + 1)
    assert snapshot.test_items["item"].tolist() == [*VALID, UNRATED]
    assert snapshot.level_labels == ("Excellent", "Good", "Fair", "Poor", "Bad")
    # qalign study list counts the same valid votes.
    store = Store(url)
    with store.session() as session:
        row = {r.study: r for r in studies_overview(session)}["pilot"]
    store.dispose()
    assert row.votes == len(snapshot.votes) + snapshot.excluded_votes and row.valid_votes == len(snapshot.votes)
    res = runner.invoke(app, ["study", "list", "--db", url])
    assert res.exit_code == 0 and f"{len(snapshot.votes)}" in res.output


def test_every_entry_point_gives_the_same_mos_and_level(study, tmp_path):
    url, _ = study
    mos = hand_mos()
    levels = {item: hand_level(m) for item, m in mos.items()}
    assert set(levels.values()) == {2, 3, 4}  # neither excellent nor bad on the 1-5 scale
    # Counting the excluded rater would move every MOS and some levels (test_07: good -> fair).
    with_troll = {item: (sum(v) + TROLL[item]) / (len(v) + 1) for item, v in VALID.items()}
    assert levels["test_07.png"] == 4 and hand_level(with_troll["test_07.png"]) == 3

    def check(found: dict[str, float], what: str) -> None:
        assert set(found) == set(mos), what
        for item, value in found.items():
            assert value == pytest.approx(mos[item], abs=1e-12), f"{what}: {item}"

    # The label table itself, and the per-item aggregates (every item, unrated ones with n = 0).
    snapshot = load_snapshot("pilot", url)
    labels = study_label_table(snapshot)
    check(dict(zip(labels.table["item"], labels.table["mos"])), "label table")
    assert dict(zip(labels.table["item"], labels.table["level"])) == levels
    assert labels.unrated == (UNRATED,) and any("1 rater(s) excluded by the admin" in n for n in labels.notes)
    row = labels.table.set_index("item").loc["test_00.png"]
    assert [row[c] for c in COUNT_COLUMNS] == [0, 0, 5, 3, 0] and row["n"] == N_RATERS
    aggregates = item_aggregates(snapshot).set_index("item")
    check(aggregates.loc[list(mos), "mos"].to_dict(), "item_aggregates")
    assert aggregates.loc[list(mos), "level"].to_dict() == levels
    assert aggregates.loc[UNRATED, "n"] == 0 and pd.isna(aggregates.loc[UNRATED, "mos"])
    assert aggregates.loc["gold_00.png", "mos"] == 5.0 and aggregates.loc["gold_00.png", "n"] == N_RATERS

    # qalign convert --study, as a library call and on the command line.
    lib = convert_study("pilot", tmp_path / "lib.json", db_url=url)
    assert lib.table.scale.low == 1 and lib.table.scale.high == 5
    from_lib = json_labels(tmp_path / "lib.json")
    check({k: v[0] for k, v in from_lib.items()}, "convert_study")
    assert {k: v[1] for k, v in from_lib.items()} == levels
    res = runner.invoke(app, ["convert", "--study", "pilot", "--out", str(tmp_path / "cli.json"), "--db", url])
    assert res.exit_code == 0, res.output
    assert json_labels(tmp_path / "cli.json") == from_lib
    convert_study("pilot", tmp_path / "folder", db_url=url)
    summary = json.loads((tmp_path / "folder" / "convert_summary.json").read_text())
    assert summary["scale"]["low"] == 1 and summary["scale"]["high"] == 5
    assert any("excluded by the admin" in n for n in summary["notes"])
    assert "1 test item(s) without valid votes are not in the training data" in summary["notes"]

    # qalign export-dataset: items.csv.
    export_study_dataset("pilot", tmp_path / "export", db_url=url, formats=["parquet"], split=None)
    items = pd.read_csv(tmp_path / "export" / "items.csv").set_index("path")
    check(items["mos"].to_dict(), "export-dataset")
    assert {k: 5 - LEVELS.index(w) for k, w in items["level"].items()} == levels

    # qalign analyze --study --model mos: items.csv.
    out = tmp_path / "analyze.csv"
    res = runner.invoke(
        app, ["analyze", "--study", "pilot", "--db", url, "--model", "mos", "--out", str(out), "--splits", "0"]
    )
    assert res.exit_code == 0, res.output
    assert "1 rater(s) excluded by the admin left out" in res.output
    check(pd.read_csv(out).set_index("item")["score"].to_dict(), "analyze --study")

    # qalign eval --study: the vote table it evaluates against.
    votes = _votes(None, "pilot", url)
    check(votes[votes["role"] == "test"].groupby("item")["vote"].mean().to_dict(), "eval --study")

    # qalign suggest: the study state it ranks from.
    state = study_state("pilot", url).items.set_index("item")
    check(state.loc[state["n"] > 0, "mos"].to_dict(), "suggest")
    assert state.loc[UNRATED, "n"] == 0

    # qalign study export --aggregate.
    agg = tmp_path / "agg.csv"
    res = runner.invoke(app, ["study", "export", "pilot", "--aggregate", "--out", str(agg), "--db", url])
    assert res.exit_code == 0, res.output
    check(pd.read_csv(agg).set_index("item").loc[list(mos), "mos"].to_dict(), "study export --aggregate")


def test_subject_model_levels_agree_on_the_vote_scale(study, tmp_path):
    url, _ = study
    lib = convert_study("pilot", tmp_path / "mle.json", db_url=url, subject_model="mle_co")
    from_convert = json_labels(tmp_path / "mle.json")
    res = runner.invoke(
        app,
        [
            "convert",
            "--study",
            "pilot",
            "--subject-model",
            "mle_co",
            "--out",
            str(tmp_path / "mle_cli.json"),
            "--db",
            url,
        ],
    )
    assert res.exit_code == 0, res.output
    assert json_labels(tmp_path / "mle_cli.json") == from_convert
    export_study_dataset(
        "pilot", tmp_path / "export", db_url=url, formats=["parquet"], split=None, subject_model="mle_co"
    )
    items = pd.read_csv(tmp_path / "export" / "items.csv").set_index("path")
    exported = {k: 5 - LEVELS.index(w) for k, w in items["level"].items()}
    assert {k: v[1] for k, v in from_convert.items()} == exported
    for item, (score, _) in from_convert.items():
        assert items.loc[item, "mos"] == pytest.approx(score)

    # The levels are those of the scores on [1, 5], as analyze --study reports the scores.
    out = tmp_path / "analyze.csv"
    assert (
        runner.invoke(
            app, ["analyze", "--study", "pilot", "--db", url, "--model", "mle_co", "--out", str(out), "--splits", "0"]
        ).exit_code
        == 0
    )
    scores = pd.read_csv(out).set_index("item")["score"]
    assert exported == {item: hand_level(float(np.clip(scores[item], 1, 5))) for item in exported}
    # Levels on the data's own range (what convert --study used with a subject model) would make
    # the best item excellent and the worst bad; on the vote scale there are neither.
    on_data_range = LevelScale.from_data(scores.to_numpy()).to_levels(scores.to_numpy())
    assert 5 in on_data_range and 1 in on_data_range
    assert 5 not in exported.values() and 1 not in exported.values()
    assert lib.table.scale.low == 1 and lib.table.scale.high == 5


def test_options_that_would_change_a_study_s_levels_are_refused(study, tmp_path):
    url, _ = study
    res = runner.invoke(
        app, ["convert", "--study", "pilot", "--low", "0", "--out", str(tmp_path / "x.json"), "--db", url]
    )
    assert res.exit_code != 0 and isinstance(res.exception, InputError)
    assert "drop --low" in str(res.exception)
    with pytest.raises(InputError, match="unknown subject model"):
        convert_study("pilot", tmp_path / "y.json", db_url=url, subject_model="median")


def test_subject_model_scores_off_the_scale_are_clipped_onto_it(tmp_path):
    """P.913 removes rater bias: an item only the two harshest raters saw, both voting 5, scores
    above 5. Its label is 5 (excellent), its interval stays on the scale, and the notes say so."""
    url = sqlite_url(tmp_path)
    store = Store(url)
    make_study(store, tmp_path / "media", n_test=4)
    table = {
        "test_00.png": [5, 5],
        "test_01.png": [2, 3, 4, 5],
        "test_02.png": [1, 2, 3, 4],
        "test_03.png": [2, 2, 4, 5],
    }
    rows = [{"item": item, "rater": f"r{k}", "vote": v} for item, votes in table.items() for k, v in enumerate(votes)]
    with store.session() as s:
        import_votes(s, get_study(s, "pilot"), pd.DataFrame(rows))
    store.dispose()
    snapshot = load_snapshot("pilot", url)
    labels = study_label_table(snapshot, "p913")
    top = labels.table.set_index("item").loc["test_00.png"]
    assert top["mos"] == 5.0 and top["level"] == 5 and top["ci_high"] == 5.0 and top["ci_low"] >= 1.0
    assert "1 p913 score(s) outside the vote scale [1, 5] were clipped onto it" in labels.notes
    result = convert_study(snapshot, tmp_path / "p913.json", subject_model="p913")
    assert json_labels(tmp_path / "p913.json")["test_00.png"] == (5.0, 5)
    assert labels.notes[0] in result.notes
