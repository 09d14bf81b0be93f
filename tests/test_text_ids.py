"""Item, rater, path and group ids are text wherever a table is read: "007" is not "7", "001" is
not "1", a rater called "NA" or "null" is a person, and a blank id is an error naming its line."""

import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from toolkit.analysis.pipeline import AnalysisOptions, analyze_votes, read_votes
from toolkit.cli import app
from toolkit.convert.readers import load_labels
from toolkit.errors import InputError
from toolkit.evaluation.inputs import align, read_ground_truth, read_scores
from toolkit.evaluation.testsets import match_votes
from toolkit.io import id_text, read_table
from toolkit.store.studies import read_item_manifest

runner = CliRunner()

RATERS = ["007", "7", "NA", "null", "n/a"]
ITEMS = ["001", "1", "2", "3"]


def _votes_csv(path, items=ITEMS, raters=RATERS):
    """Every rater votes on every item; written by hand so no writer can normalise the ids."""
    lines = ["item,rater,vote"]
    for r, rater in enumerate(raters):
        for i, item in enumerate(items):
            lines.append(f"{item},{rater},{1 + (i + r) % 5}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_id_text_is_one_rule_for_every_reader():
    assert id_text(" 007 ") == "007"
    assert id_text(7) == "7" and id_text(7.0) == "7" and id_text(7.5) == "7.5"
    assert id_text("NA") == "NA" and id_text("null") == "null"
    assert id_text("") is None and id_text("  ") is None and id_text(None) is None and id_text(float("nan")) is None


def test_read_table_keeps_ids_as_written_and_other_columns_typed(tmp_path):
    csv = tmp_path / "v.csv"
    csv.write_text("item,rater,vote,extra\n001, 007 ,3,NA\n1,7,4,\n1,NA,5,2.5\n1,null,5,1\n")
    frame = read_table(csv)
    assert frame["item"].tolist() == ["001", "1", "1", "1"]
    assert frame["rater"].tolist() == ["007", "7", "NA", "null"]
    assert frame["vote"].dtype.kind == "i"  # numbers still numbers
    assert frame["extra"].isna().tolist() == [True, True, False, False]  # NA guessing outside ids


def test_blank_required_id_names_the_line(tmp_path):
    csv = tmp_path / "v.csv"
    csv.write_text("item,rater,vote\na.png,x,3\n\na.png,,4\n")
    assert read_table(csv)["rater"].isna().tolist() == [False, True]  # not required: missing
    with pytest.raises(InputError, match=r"v\.csv line 4: column 'rater' is empty"):
        read_table(csv, required=("item", "rater"))
    with pytest.raises(InputError, match=r"line 4: column 'rater' is empty"):
        read_votes(csv)


def test_parquet_and_json_ids_become_decimal_text(tmp_path):
    frame = pd.DataFrame({"item": [1, 2, 3], "rater": [7.0, None, 8.0], "vote": [3, 4, 5]})
    frame.to_parquet(tmp_path / "v.parquet")
    pq = read_table(tmp_path / "v.parquet")
    assert pq["item"].tolist() == ["1", "2", "3"]
    assert pq["rater"].tolist() == ["7", None, "8"]
    with pytest.raises(InputError, match=r"v\.parquet row 2: column 'rater' is empty"):
        read_table(tmp_path / "v.parquet", required=("rater",))
    lines = ['{"item": 1, "rater": "007", "vote": 3}', '{"item": "001", "rater": 7, "vote": 2}']
    (tmp_path / "v.jsonl").write_text("\n".join(lines) + "\n")
    js = read_table(tmp_path / "v.jsonl")
    assert js["item"].tolist() == ["1", "001"] and js["rater"].tolist() == ["007", "7"]


def test_analyze_counts_every_rater_and_item_apart(tmp_path):
    csv = _votes_csv(tmp_path / "votes.csv")
    # The plain MOS model: a handful of synthetic votes is too few for a maximum-likelihood fit.
    analysis = analyze_votes(read_votes(csv), AnalysisOptions(model="mos", agreement_splits=0), source=str(csv))
    assert sorted(analysis.result.items.index) == sorted(ITEMS)
    assert sorted(analysis.screening.table.index) == sorted(RATERS)
    assert analysis.n_votes == len(ITEMS) * len(RATERS)
    out = tmp_path / "items.csv"
    result = runner.invoke(app, ["analyze", str(csv), "--model", "mos", "--out", str(out), "--splits", "0"])
    assert result.exit_code == 0, result.output
    assert sorted(pd.read_csv(out, dtype={"item": str})["item"]) == sorted(ITEMS)


def test_analyze_blank_rater_is_one_line_error(tmp_path):
    csv = tmp_path / "votes.csv"
    csv.write_text("item,rater,vote\n001,007,3\n1,,4\n")
    result = runner.invoke(app, ["analyze", str(csv), "--out", str(tmp_path / "o.csv")])
    assert isinstance(result.exception, InputError)
    assert str(result.exception).endswith("votes.csv line 3: column 'rater' is empty")


def test_study_import_stores_raters_distinctly(tmp_path):
    media = tmp_path / "media"
    media.mkdir()
    for name in ("p0.png", "p1.png"):
        Image.new("RGB", (8, 8)).save(media / name)
    db = f"sqlite:///{tmp_path / 's.db'}"
    assert runner.invoke(app, ["db", "upgrade", "--db", db]).exit_code == 0
    assert runner.invoke(app, ["study", "create", "ids", "--media", str(media), "--db", db]).exit_code == 0
    votes = _votes_csv(tmp_path / "votes.csv", items=["p0.png", "p1.png"])
    result = runner.invoke(app, ["study", "import", "ids", str(votes), "--db", db])
    assert result.exit_code == 0, result.output
    assert f"{2 * len(RATERS)} votes imported" in result.output

    from toolkit.store import Store, get_study, votes_frame

    store = Store(db)
    with store.session() as session:
        stored = votes_frame(session, get_study(session, "ids"))
    store.dispose()
    assert sorted(stored["rater"].unique()) == sorted(RATERS)

    blank = tmp_path / "blank.csv"
    blank.write_text("item,rater,vote\np0.png,,3\n")
    result = runner.invoke(app, ["study", "import", "ids", str(blank), "--db", db])
    assert isinstance(result.exception, InputError)
    assert str(result.exception).endswith("blank.csv line 2: column 'rater' is empty")


def test_import_votes_frame_with_blank_rater_names_the_row(tmp_path):
    from toolkit.store import Store, add_items, create_study, get_study, import_votes, scan_media
    from toolkit.store.migrate import upgrade

    media = tmp_path / "media"
    media.mkdir()
    Image.new("RGB", (8, 8)).save(media / "a.png")
    url = f"sqlite:///{tmp_path / 'db.db'}"
    upgrade(url)
    store = Store(url)
    with store.session() as s:
        add_items(s, create_study(s, "s", media), scan_media(media))
    frame = pd.DataFrame({"item": ["a.png", "a.png"], "rater": ["x", "  "], "vote": [3, 4]})
    with pytest.raises(InputError, match=r"row 1: rater \('rater'\) is empty"):
        with store.session() as s:
            import_votes(s, get_study(s, "s"), frame)
    store.dispose()


def test_convert_keeps_leading_zeros_and_reads_votes_per_rater(tmp_path):
    mos = tmp_path / "mos.csv"
    mos.write_text("image,mos\n001,1.5\n1,4.0\n 2 ,3.0\n")
    labels = load_labels(mos)
    assert labels.frame["path"].tolist() == ["001", "1", "2"]
    votes = _votes_csv(tmp_path / "votes.csv")
    by_vote = load_labels(votes, low=1, high=5)  # every item's mean is 3: the scale is given
    assert sorted(by_vote.frame["path"]) == sorted(ITEMS)
    assert set(by_vote.frame["n"]) == {len(RATERS)}  # "007", "7", "NA", "null" each counted
    pd.DataFrame({"path": [1, 2, 3], "mos": [1.0, 2.0, 3.0]}).to_parquet(tmp_path / "mos.parquet")
    assert load_labels(tmp_path / "mos.parquet").frame["path"].tolist() == ["1", "2", "3"]
    blank = tmp_path / "blank.csv"
    blank.write_text("item,rater,vote\n001,a,3\n001,,4\n")
    with pytest.raises(InputError, match=r"line 3: column 'rater' is empty"):
        load_labels(blank)


def test_eval_matches_ids_as_text(tmp_path):
    truth = tmp_path / "gt.csv"
    truth.write_text("path,mos\n001,5.0\n1,1.0\n2,2.0\n3,3.0\n")
    scores = tmp_path / "s.parquet"
    pd.DataFrame({"path": [1, 2, 3], "score": [1.1, 2.1, 2.9]}).to_parquet(scores)
    aligned = align([read_scores(scores)], read_ground_truth(truth))
    assert aligned.items == ["1", "2", "3"]  # "1" is not "001", and the Parquet 1 is "1", not "1.0"
    assert aligned.mos.tolist() == [1.0, 2.0, 3.0]

    votes = read_table(_votes_csv(tmp_path / "votes.csv"))
    matched = match_votes(votes, ["001", "1"], n_splits=5)
    assert matched.n_items == 2 and matched.n_raters == len(RATERS)
    assert matched.n_votes == 2 * len(RATERS)


def test_item_manifest_strips_ids_and_refuses_a_blank_path(tmp_path):
    manifest = tmp_path / "items.csv"
    manifest.write_text("path,content_group\n001.png, g1 \nNA.png,\n")
    specs = read_item_manifest(manifest)
    assert [(s.path, s.content_group) for s in specs] == [("001.png", "g1"), ("NA.png", None)]
    manifest.write_text("path,content_group\na.png,g\n  ,g\n")
    with pytest.raises(InputError, match=r"line 3: column 'path' is empty"):
        read_item_manifest(manifest)


def test_suggest_reads_item_ids_as_text(tmp_path):
    from toolkit.active import suggest

    scores = tmp_path / "scores.csv"
    scores.write_text("item,score,entropy\n001,3.0,0.5\n1,2.0,0.9\n")
    votes = tmp_path / "votes.csv"
    votes.write_text("item,rater,vote\n001,NA,3\n001,null,4\n")
    result = suggest(scores=scores, votes=votes)
    ranking = result.ranking.set_index("item")
    assert sorted(ranking.index) == ["001", "1"]
    assert ranking.loc["001", "n"] == 2


def test_scoring_manifest_ids_are_text(tmp_path):
    from toolkit.scoring.inputs import read_manifest

    csv = tmp_path / "m.csv"
    csv.write_text("image\n001.png\n NA.png \n")
    assert [item.path for item in read_manifest(csv)] == [str(tmp_path / "001.png"), str(tmp_path / "NA.png")]
    js = tmp_path / "m.json"
    js.write_text('[{"image": 7.0}, {"image": " "}]')
    with pytest.raises(InputError, match=r"row 1: empty 'image'"):
        read_manifest(js)
    js.write_text('[{"image": 7.0}]')
    assert [item.path for item in read_manifest(js)] == [str(tmp_path / "7")]
