"""No command deletes or replaces a folder it did not write: only a folder with the toolkit's
output marker is replaced, and only when asked to (``--overwrite``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from toolkit.cli import app
from toolkit.convert import convert
from toolkit.convert.study_dataset import export_study_dataset
from toolkit.demo.pipeline import _prepare_out_dir
from toolkit.errors import InputError
from toolkit.files import OUTPUT_MARKER, atomic_directory, claim_output_dir, read_output_marker
from toolkit.store import Store, import_votes
from toolkit.store.setup import StudySetup, setup_study
from toolkit.training.output import check_output_dir

from fixtures_ui import sqlite_url

NOT_OURS = "is not empty and was not written by qalign"
EARLIER = "holds an earlier qalign output; pass --overwrite"


@pytest.fixture()
def photos(tmp_path: Path) -> tuple[Path, Path]:
    """A user's folder of photos and a MOS table of them."""
    root = tmp_path / "photos"
    root.mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for i in range(6):
        Image.fromarray((rng.random((6, 5, 3)) * 255).astype("uint8")).save(root / f"{i}.png")
        rows.append({"image": f"{i}.png", "mos": 10.0 * (i + 1), "ref": f"ref{i // 2}"})
    table = tmp_path / "votes.csv"
    pd.DataFrame(rows).to_csv(table, index=False)
    return table, root


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _cli(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_claim_output_dir_rules(tmp_path: Path) -> None:
    assert claim_output_dir(tmp_path / "new") == tmp_path / "new"  # a new path
    (tmp_path / "empty").mkdir()
    assert claim_output_dir(tmp_path / "empty") == tmp_path / "empty"  # an empty folder
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="exists and is not a folder"):
        claim_output_dir(tmp_path / "file", overwrite=True)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    for overwrite in (False, True):
        with pytest.raises(InputError, match=f"{mine} {NOT_OURS}"):
            claim_output_dir(mine, overwrite=overwrite)
    with pytest.raises(InputError, match="holds the input"):
        claim_output_dir(tmp_path, overwrite=True, inputs=[mine / "notes.txt"])


def test_atomic_directory_replaces_only_its_own_output(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()  # an empty folder is accepted
    with atomic_directory(out, written_by="test") as tmp:
        (tmp / "v1").write_text("1")
    assert _listing(out) == [OUTPUT_MARKER, "v1"]
    marker = read_output_marker(out)
    assert marker is not None and marker["written_by"] == "test" and "created" in marker
    with pytest.raises(InputError, match=EARLIER):
        with atomic_directory(out) as tmp:
            pytest.fail("the body must not run")  # refused before any work
    with atomic_directory(out, overwrite=True) as tmp:
        (tmp / "v2").write_text("2")
    assert _listing(out) == [OUTPUT_MARKER, "v2"]

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match=NOT_OURS):
        with atomic_directory(mine, overwrite=True):
            pass
    assert _listing(mine) == ["keep.txt"]


def test_convert_refuses_to_replace_the_photos(photos: tuple[Path, Path]) -> None:
    table, root = photos
    before = _listing(root)
    result = _cli("convert", table, "--out", root, "--images", root, "--format", "dataset", "--low", 0, "--high", 100)
    assert result.exit_code != 0
    assert isinstance(result.exception, InputError) and str(root) in str(result.exception)
    assert _listing(root) == before  # the photos survive
    for overwrite in (False, True):
        with pytest.raises(InputError, match="holds the input"):
            convert(table, root, fmt="dataset", images=root, low=0, high=100, overwrite=overwrite)
    assert _listing(root) == before


def test_convert_output_folders(photos: tuple[Path, Path], tmp_path: Path) -> None:
    table, root = photos
    common = ["--images", root, "--low", 0, "--high", 100, "--group-by", "ref"]
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("mine")
    for fmt in ("json", "dataset", "parquet"):
        result = _cli("convert", table, "--out", mine, "--format", fmt, *common, "--overwrite")
        assert result.exit_code != 0 and NOT_OURS in str(result.exception), fmt
    assert _listing(mine) == ["thesis.tex"]

    out = tmp_path / "data"
    out.mkdir()  # an existing empty folder
    assert _cli("convert", table, "--out", out, "--format", "dataset", *common).exit_code == 0
    assert json.loads((out / OUTPUT_MARKER).read_text())["written_by"] == "qalign convert"
    again = _cli("convert", table, "--out", out, "--format", "json", *common, "--split", "train=0.5,test=0.5")
    assert again.exit_code != 0 and EARLIER in str(again.exception)
    assert (out / "dataset_dict.json").is_file()  # untouched
    again = _cli(
        "convert", table, "--out", out, "--format", "json", *common, "--split", "train=0.5,test=0.5", "--overwrite"
    )
    assert again.exit_code == 0, again.output
    assert _listing(out) == [OUTPUT_MARKER, "convert_summary.json", "test.json", "train.json"]  # replaced whole
    single = tmp_path / "one.json"  # a single file is not a folder output
    assert _cli("convert", table, "--out", single, "--images", root, "--low", 0, "--high", 100).exit_code == 0


@pytest.fixture()
def study(tmp_path: Path) -> tuple[str, Path]:
    media = tmp_path / "media"
    media.mkdir()
    rng = np.random.default_rng(1)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(media / f"{i}.png")
    (media / "manifest.csv").write_text("path,content_group\n" + "".join(f"{i}.png,g{i}\n" for i in range(4)))
    url = sqlite_url(tmp_path)
    store = Store(url)
    with store.session() as session:
        created, _ = setup_study(session, StudySetup(name="s", media_root=media, manifest=media / "manifest.csv"))
        votes = [{"item": f"{i}.png", "rater": f"r{r}", "vote": 1 + (i + r) % 5} for i in range(4) for r in range(3)]
        import_votes(session, created, pd.DataFrame(votes))
    store.dispose()
    return url, media


def test_export_dataset_output_folders(study: tuple[str, Path], tmp_path: Path) -> None:
    url, media = study
    args = ["export-dataset", "s", "--db", url, "--format", "parquet", "--split", "none"]
    before = _listing(media)
    result = _cli(*args, "--out", media, "--overwrite")  # the media folder is never the output
    assert result.exit_code != 0 and str(media) in str(result.exception)
    assert _listing(media) == before
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("mine")
    result = _cli(*args, "--out", mine, "--overwrite")
    assert result.exit_code != 0 and NOT_OURS in str(result.exception)
    assert _listing(mine) == ["keep.txt"]

    out = tmp_path / "export"
    out.mkdir()
    assert _cli(*args, "--out", out).exit_code == 0
    assert (out / OUTPUT_MARKER).is_file() and (out / "data" / "train.parquet").is_file()
    result = _cli(*args, "--out", out)
    assert result.exit_code != 0 and EARLIER in str(result.exception)
    assert _cli(*args, "--out", out, "--overwrite").exit_code == 0
    with pytest.raises(InputError, match=EARLIER):
        export_study_dataset("s", out, db_url=url, formats=["parquet"], split=None)


def test_training_and_demo_folders(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="holds no previous training run"):
        check_output_dir(mine)
    run = check_output_dir(tmp_path / "run")  # claimed at once, so a killed run is recognised
    assert (read_output_marker(run) or {})["written_by"] == "qalign train"
    assert check_output_dir(run) == run  # a resumed run
    converted = tmp_path / "converted"
    with atomic_directory(converted, written_by="qalign convert") as tmp:
        (tmp / "train.json").write_text("[]")
    with pytest.raises(InputError, match="holds no previous training run"):
        check_output_dir(converted)  # another toolkit output is not a training run

    with pytest.raises(InputError, match=NOT_OURS):
        _prepare_out_dir(mine, overwrite=True)
    assert _listing(mine) == ["keep.txt"]
    demo = tmp_path / "demo"
    _prepare_out_dir(demo, overwrite=False)
    (demo / "study.db").write_text("")
    with pytest.raises(InputError, match=EARLIER):
        _prepare_out_dir(demo, overwrite=False)
    _prepare_out_dir(demo, overwrite=True)
    assert _listing(demo) == [OUTPUT_MARKER]
