"""A study exported as a Hugging Face dataset: card, grouped splits, duplicates, reloading,
the ``qalign export-dataset`` command, and ``--push-to-hub`` without a token."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from toolkit.cli import app
from toolkit.convert.study_dataset import export_study_dataset
from toolkit.errors import InputError
from toolkit.levels import vote_stats
from toolkit.store import Store, get_study, import_votes
from toolkit.store.raters import set_rater_excluded
from toolkit.store.setup import StudySetup, setup_study

from fixtures_ui import sqlite_url

N_GROUPS = 6


@pytest.fixture(scope="module")
def study_db(tmp_path_factory):
    """Six source contents x two distortions, one byte-identical copy, a gold item; 5 raters,
    one of them screened out, one rating every other item only; one test item nobody rated."""
    tmp = tmp_path_factory.mktemp("export")
    media = tmp / "media"
    media.mkdir()
    rng = np.random.default_rng(3)
    rows = ["path,role,content_group,expected_level"]
    paths = []
    for g in range(N_GROUPS):
        for d in range(2):
            name = f"src{g}_d{d}.png"
            Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(media / name)
            rows.append(f"{name},test,src{g},")
            paths.append(name)
    (media / "copy_of_src0_d0.png").write_bytes((media / "src0_d0.png").read_bytes())
    rows.append("copy_of_src0_d0.png,test,copy,")
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(media / "unrated.png")
    rows.append("unrated.png,test,lonely,")
    Image.fromarray(np.full((8, 8, 3), 255, dtype=np.uint8)).save(media / "gold.png")
    rows.append("gold.png,gold,gold,5")
    (media / "manifest.csv").write_text("\n".join(rows) + "\n")
    url = sqlite_url(tmp)
    store = Store(url)
    with store.session() as s:
        study, _ = setup_study(
            s,
            StudySetup(
                name="pilot",
                media_root=media,
                manifest=media / "manifest.csv",
                labels=["Superb", "Fine", "So-so", "Weak", "Awful"],
                target_votes=4,
            ),
        )
        votes = []
        for k, item in enumerate(paths + ["copy_of_src0_d0.png", "gold.png"]):
            for r in range(5):
                if r == 3 and k % 2:  # partial sampling: r3 skips every other item
                    continue
                votes.append({"item": item, "rater": f"r{r}", "vote": int(rng.integers(1, 6))})
        import_votes(s, study, pd.DataFrame(votes))
        set_rater_excluded(s, study, "r4", True)
    store.dispose()
    return url, media, pd.DataFrame(votes)


def test_export_writes_card_splits_and_reloadable_dataset(study_db, tmp_path):
    import datasets

    url, media, votes = study_db
    out = tmp_path / "export"
    result = export_study_dataset(
        "pilot",
        out,
        db_url=url,
        split="train=0.5,test=0.5",
        seed=1,
        license="cc-by-4.0",
        citation="@misc{pilot2026, title={Pilot ratings}}",
    )
    names = {p.relative_to(out).as_posix() for p in result.files}
    assert {
        "README.md",
        "items.csv",
        "dropped_duplicates.csv",
        "data/train.parquet",
        "data/test.parquet",
        "hf_dataset/dataset_dict.json",
    } <= names

    # Duplicates dropped by hash, the unrated item left out, every content group on one side.
    assert result.duplicates.dropped["path"].tolist() == ["copy_of_src0_d0.png"]
    items = pd.read_csv(out / "items.csv")
    assert len(items) == 2 * N_GROUPS and "unrated.png" not in set(items["path"])
    assert items.groupby("content_group")["split"].nunique().max() == 1
    assert set(items["split"]) == {"train", "test"}

    # Labels: valid votes only (r4 was screened out), plain MOS with its t interval (kept on the
    # 1-5 scale: three votes this far apart reach below 1).
    valid = votes[(votes["rater"] != "r4") & votes["item"].str.startswith("src")]
    expected = vote_stats(valid, item="item", vote="vote")
    row = items.set_index("path").loc["src3_d1.png"]
    assert row["n"] == 3
    assert row["mos"] == pytest.approx(expected.loc["src3_d1.png", "mos"])
    assert expected.loc["src3_d1.png", "ci_low"] < 1 and row["ci_low"] == 1.0
    assert row["ci_high"] == pytest.approx(min(5.0, expected.loc["src3_d1.png", "ci_high"]))
    assert row["votes_excellent"] == expected.loc["src3_d1.png", "votes_excellent"]

    saved = datasets.load_from_disk(str(out / "hf_dataset"))
    assert sorted(saved) == ["test", "train"]
    train = saved["train"]
    assert isinstance(train.features["image"], datasets.Image)
    record = train[0]
    assert record["image"].size == (10, 12)
    assert record["mos_ci_low"] <= record["mos"] <= record["mos_ci_high"]
    assert sum(record["vote_counts"]) == record["n"] in (3, 4)
    parquet = datasets.load_dataset(
        "parquet",
        data_files={s: str(out / "data" / f"{s}.parquet") for s in ("train", "test")},
        cache_dir=str(tmp_path / "cache"),
    )
    assert isinstance(parquet["test"].features["image"], datasets.Image)
    assert len(parquet["train"]) + len(parquet["test"]) == 2 * N_GROUPS
    assert set(parquet["train"]["group"]).isdisjoint(parquet["test"]["group"])

    card = (out / "README.md").read_text()
    header = yaml.safe_load(card.split("---")[1])
    assert header["license"] == "cc-by-4.0"
    assert header["configs"][0]["data_files"] == [
        {"split": s, "path": f"data/{s}.parquet"} for s in result.table.split_names
    ]
    for text in (
        "Superb (5), Fine (4), So-so (3), Weak (2), Awful (1)",  # the study's own button labels
        "| raters screened out (their votes are not used) | 1 |",
        "| raters with valid votes on test items | 4 |",
        "| votes per item in the dataset (min / median / mean / max) | 3 / 3.5 / 3.5 / 4 |",
        "1 gold item(s)",
        "subject model: `mos`",
        "Byte-identical media (same SHA-256) were dropped before splitting: 1 item(s).",
        "Released under `cc-by-4.0`.",
        "@misc{pilot2026, title={Pilot ratings}}",
        "1 test item(s) without valid votes are not in the dataset",
        "mos_ci_low, mos_ci_high",
    ):
        assert text in card, text
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temporary folders left


def test_subject_model_labels_and_cli(study_db, tmp_path):
    url, _, votes = study_db
    bib = tmp_path / "ref.bib"
    bib.write_text("@article{x, title={T}}\n")
    res = CliRunner().invoke(
        app,
        [
            "export-dataset",
            "pilot",
            "--db",
            url,
            "--out",
            str(tmp_path / "e"),
            "--format",
            "parquet",
            "--subject-model",
            "p913",
            "--split",
            "none",
            "--citation",
            str(bib),
        ],
    )
    assert res.exit_code == 0, res.output
    assert not (tmp_path / "e" / "hf_dataset").exists() and (tmp_path / "e" / "data" / "train.parquet").is_file()
    card = (tmp_path / "e" / "README.md").read_text()
    assert "subject model: `p913`" in card and "@article{x, title={T}}" in card
    assert "No licence was stated" in card and "license: unknown" in card
    items = pd.read_csv(tmp_path / "e" / "items.csv")
    assert set(items["split"]) == {"train"}
    assert (items["ci_low"] <= items["mos"]).all() and (items["mos"] <= items["ci_high"]).all()
    assert (items["ci_high"] > items["ci_low"]).any()
    plain = votes[votes["rater"] != "r4"].groupby("item")["vote"].mean()
    # P.913 removes each rater's bias; under partial sampling that moves the item means.
    assert not np.allclose(items["mos"], plain.loc[items["path"]].to_numpy())


def test_push_to_hub_without_a_token_fails_before_exporting(study_db, tmp_path, monkeypatch):
    url, _, _ = study_db
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))  # no stored login either
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InputError, match="needs an access token"):
        export_study_dataset("pilot", tmp_path / "x", db_url=url, push_to_hub="someone/pilot")
    assert not (tmp_path / "x").exists()
    res = CliRunner().invoke(
        app, ["export-dataset", "pilot", "--db", url, "--out", str(tmp_path / "y"), "--push-to-hub", "someone/pilot"]
    )
    assert res.exit_code != 0 and not (tmp_path / "y").exists()


def test_unknown_study_and_format(study_db, tmp_path):
    url, _, _ = study_db
    with pytest.raises(InputError, match="unknown export format"):
        export_study_dataset("pilot", tmp_path / "z", db_url=url, formats=["csv"])
    from toolkit.errors import StoreError

    with pytest.raises(StoreError):
        export_study_dataset("nope", tmp_path / "z", db_url=url)
    with Store(url).session() as s:
        assert get_study(s, "pilot").name == "pilot"
