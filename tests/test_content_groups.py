"""Content groups: derived from folders or file names when a study is created, and splits that
say plainly when there were none to split by."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from toolkit.cli import app
from toolkit.convert.splits import ITEM_SPLIT_NOTE, is_content_split
from toolkit.errors import InputError
from toolkit.store import Store, get_study, study_items
from toolkit.store.studies import ContentGrouping

from fixtures_ui import sqlite_url

runner = CliRunner()
REFS = 4  # reference contents, two distorted versions of each, one folder per reference


def _images(media: Path, refs: range) -> list[str]:
    paths = []
    for g in refs:
        for d in range(2):
            path = media / f"ref{g}" / f"ref{g}_d{d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (8, 8), (40 * g, 100 * d, 7)).save(path)
            paths.append(path.relative_to(media).as_posix())
    return paths


@pytest.fixture()
def media_db(tmp_path: Path) -> tuple[Path, str, list[str]]:
    media = tmp_path / "media"
    return media, sqlite_url(tmp_path), _images(media, range(REFS))


def _groups(db: str, name: str) -> dict[str, str]:
    store = Store(db)
    try:
        with store.session() as session:
            return {item.path: item.content_group for item in study_items(session, get_study(session, name))}
    finally:
        store.dispose()


def _create(db: str, media: Path, name: str, *options: str):
    return runner.invoke(app, ["study", "create", name, "--media", str(media), "--db", db, *options])


def test_groups_from_a_folder_level_or_a_file_name_regex(media_db) -> None:
    media, db, paths = media_db
    expected = {p: p.split("/")[0] for p in paths}
    assert _create(db, media, "by-folder", "--group-by-folder", "0").exit_code == 0
    assert _groups(db, "by-folder") == expected
    assert _create(db, media, "by-regex", "--group-regex", r"^(ref\d+)_").exit_code == 0
    assert _groups(db, "by-regex") == expected
    # Without a capture group the whole match is the group.
    assert _create(db, media, "whole-match", "--group-regex", r"d\d").exit_code == 0
    assert set(_groups(db, "whole-match").values()) == {"d0", "d1"}
    # Without a rule each file is its own group (its name without extension).
    assert _create(db, media, "plain").exit_code == 0
    assert _groups(db, "plain") == {p: Path(p).stem for p in paths}

    # New files follow the rule given to add-items; the old ones keep their groups.
    added = _images(media, range(REFS, REFS + 1))
    result = runner.invoke(app, ["study", "add-items", "by-regex", "--group-regex", r"^(ref\d+)_", "--db", db])
    assert result.exit_code == 0, result.output
    assert "2 items added" in result.output
    assert _groups(db, "by-regex") == {**expected, **{p: f"ref{REFS}" for p in added}}


def test_a_manifest_group_wins_over_the_rule(media_db) -> None:
    media, db, paths = media_db
    manifest = media / "manifest.csv"
    manifest.write_text(
        "path,content_group\n" + "".join(f"{p},{'scene' if i == 0 else ''}\n" for i, p in enumerate(paths))
    )
    assert _create(db, media, "mixed", "--manifest", str(manifest), "--group-by-folder", "0").exit_code == 0
    groups = _groups(db, "mixed")
    assert groups[paths[0]] == "scene" and groups[paths[1]] == "ref0" and groups[paths[-1]] == f"ref{REFS - 1}"


def test_an_item_the_rule_cannot_place_is_a_clear_error_and_nothing_is_created(media_db) -> None:
    media, db, _ = media_db
    Image.new("RGB", (8, 8)).save(media / "ref1" / "stray.png")
    result = _create(db, media, "strict", "--group-regex", r"^(ref\d+)_")
    assert result.exit_code != 0
    assert isinstance(result.exception, InputError)
    message = str(result.exception)
    assert "ref1/stray.png" in message and "does not match" in message and "\n" not in message
    assert "strict" not in runner.invoke(app, ["study", "list", "--db", db]).output  # the transaction was rolled back

    result = _create(db, media, "too-deep", "--group-by-folder", "1")
    assert result.exit_code != 0 and "no folder at level 1" in str(result.exception)
    result = _create(db, media, "both", "--group-by-folder", "0", "--group-regex", "ref")
    assert result.exit_code != 0 and "not both" in str(result.exception)
    with pytest.raises(InputError, match="not a valid regular expression"):
        ContentGrouping(regex="ref(")
    with pytest.raises(InputError, match="empty group"):
        ContentGrouping(regex=r"^(x*)ref").group("ref0/ref0_d0.png")


def test_a_split_of_single_item_groups_is_not_a_content_split() -> None:
    assert is_content_split(np.array(["a", "a", "b"])) and not is_content_split(np.array(["a", "b", "c"]))
    assert is_content_split(np.array(["a"]))  # one item: nothing to say about its split


def _rated_study(media: Path, db: str, name: str, *options: str) -> None:
    assert _create(db, media, name, *options).exit_code == 0
    paths = sorted(_groups(db, name))
    rng = np.random.default_rng(0)
    votes = pd.DataFrame(
        [{"item": p, "rater": f"r{r}", "vote": int(rng.integers(1, 6))} for p in paths for r in range(3)]
    )
    csv = media.parent / f"{name}_votes.csv"
    votes.to_csv(csv, index=False)
    assert runner.invoke(app, ["study", "import", name, str(csv), "--db", db]).exit_code == 0


def test_the_card_and_the_notes_say_how_items_were_split(media_db, tmp_path: Path) -> None:
    from toolkit.convert.study_dataset import export_study_dataset

    media, db, _ = media_db
    _rated_study(media, db, "grouped", "--group-by-folder", "0")
    _rated_study(media, db, "flat")

    grouped = export_study_dataset("grouped", tmp_path / "grouped", db_url=db, split="train=0.5,test=0.5", seed=1)
    assert (
        "Split by source content (train 0.5, test 0.5, seed 1): every item of a content group is in the same split."
        in grouped.card
    )
    assert "no content grouping was available" not in grouped.card
    assert ITEM_SPLIT_NOTE not in grouped.notes
    items = pd.read_csv(tmp_path / "grouped" / "items.csv")
    assert items.groupby("content_group")["split"].nunique().max() == 1

    flat = export_study_dataset("flat", tmp_path / "flat", db_url=db, split="train=0.5,test=0.5", seed=1)
    assert "Split by source content" not in flat.card
    assert "every item of a content group is in the same split" not in flat.card
    assert (
        "Split item by item (train 0.5, test 0.5, seed 1): no content grouping was available (every item is its"
        " own group), so items were split individually, not by source content."
    ) in flat.card
    assert "| group | content group; none was available, so every item is its own group |" in flat.card
    assert ITEM_SPLIT_NOTE in flat.notes and ITEM_SPLIT_NOTE in flat.card  # also under the card's export notes

    # One split claims nothing about content either way.
    single = export_study_dataset("flat", tmp_path / "single", db_url=db, split=None)
    assert "One split holding every item." in single.card and ITEM_SPLIT_NOTE not in single.notes


def test_convert_prints_the_note(media_db, tmp_path: Path) -> None:
    media, db, _ = media_db
    _rated_study(media, db, "flat")
    _rated_study(media, db, "grouped", "--group-by-folder", "0")
    args = ["convert", "--split", "train=0.5,test=0.5", "--db", db]
    flat = runner.invoke(app, [*args, "--study", "flat", "--out", str(tmp_path / "flat")])
    assert flat.exit_code == 0, flat.output
    assert "items were split individually" in " ".join(flat.output.split())
    grouped = runner.invoke(app, [*args, "--study", "grouped", "--out", str(tmp_path / "grouped")])
    assert grouped.exit_code == 0, grouped.output
    assert "split individually" not in " ".join(grouped.output.split())
