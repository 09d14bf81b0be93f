"""``qalign analyze`` reads custom-named id columns as text, and every report folder follows the
output-folder rule: a non-empty folder the toolkit did not write is refused and left as it was."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from toolkit.cli import app
from toolkit.errors import InputError
from toolkit.files import OUTPUT_MARKER

runner = CliRunner()


def run(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def write_votes(path: Path, names: tuple[str, str, str] = ("item", "rater", "vote")) -> Path:
    """Six items rated by four raters, two of them ``007`` and ``7``; columns named ``names``."""
    rng = np.random.default_rng(3)
    raters = ["007", "7", "ann", "bob"]
    rows = [
        {names[0]: f"clip{i}", names[1]: r, names[2]: int(np.clip(1 + i % 5 + rng.integers(-1, 2), 1, 5))}
        for i in range(6)
        for r in raters
    ]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_custom_id_columns_are_read_as_text(tmp_path: Path) -> None:
    votes = write_votes(tmp_path / "votes.csv", ("clip", "worker", "score"))
    raters = tmp_path / "raters.csv"
    result = run(
        "analyze", votes, "--item-col", "clip", "--rater-col", "worker", "--vote-col", "score",
        "--model", "mos", "--out", tmp_path / "items.csv", "--raters-out", raters, "--splits", 0,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    table = pd.read_csv(raters, dtype={"rater": str})
    assert sorted(table["rater"]) == ["007", "7", "ann", "bob"]  # not merged into rater 7


def test_report_into_a_folder_of_photos_is_refused_and_the_photo_stays(tmp_path: Path) -> None:
    votes = write_votes(tmp_path / "votes.csv")
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "holiday.jpg").write_bytes(b"\xff\xd8 a photo")
    out = tmp_path / "items.csv"
    result = run("analyze", votes, "--model", "mos", "--out", out, "--report", photos, "--splits", 0)
    assert isinstance(result.exception, InputError) and "not written by qalign" in str(result.exception)
    assert sorted(p.name for p in photos.iterdir()) == ["holiday.jpg"]
    assert (photos / "holiday.jpg").read_bytes() == b"\xff\xd8 a photo"
    assert not out.exists()  # refused before anything was written


def test_an_earlier_report_is_replaced_only_with_overwrite(tmp_path: Path) -> None:
    votes = write_votes(tmp_path / "votes.csv")
    report = tmp_path / "report"
    args = ["analyze", votes, "--model", "mos", "--out", report / "items.csv", "--report", report, "--splits", 0]
    first = run(*args)
    assert first.exit_code == 0, first.output
    assert (report / OUTPUT_MARKER).is_file() and (report / "report.md").is_file() and (report / "items.csv").is_file()
    again = run(*args)
    assert isinstance(again.exception, InputError) and "--overwrite" in str(again.exception)
    assert run(*args, "--overwrite").exit_code == 0


def test_report_folder_may_not_hold_the_votes(tmp_path: Path) -> None:
    folder = tmp_path / "study"
    folder.mkdir()
    votes = write_votes(folder / "votes.csv")
    result = run("analyze", votes, "--model", "mos", "--out", tmp_path / "i.csv", "--report", folder)
    assert isinstance(result.exception, InputError) and "holds the input" in str(result.exception)
    assert votes.is_file()


def test_library_report_writers_refuse_a_folder_of_photos(tmp_path: Path) -> None:
    from toolkit.analysis.pipeline import AnalysisOptions, analyze_votes, read_votes
    from toolkit.analysis.report import write_report as write_analysis_report
    from toolkit.evaluation import write_report
    from toolkit.evaluation.comparison_report import write_models_report
    from toolkit.evaluation.model_comparison import ModelsReport

    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "holiday.jpg").write_bytes(b"photo")
    mos = np.linspace(1, 5, 12)
    with pytest.raises(InputError, match="not written by qalign"):
        write_report(photos, {"m": mos + 0.1}, mos, n_boot=20)
    with pytest.raises(InputError, match="not written by qalign"):
        write_models_report(ModelsReport(photos, [], {}), title="t")
    options = AnalysisOptions(model="mos", agreement_splits=0)
    analysis = analyze_votes(read_votes(write_votes(tmp_path / "votes.csv"), options), options)
    with pytest.raises(InputError, match="not written by qalign"):
        write_analysis_report(analysis, photos)
    assert [p.name for p in photos.iterdir()] == ["holiday.jpg"]

    # A new folder is written and marked; writing into it again needs overwrite.
    report = write_report(tmp_path / "rep", {"m": mos + 0.1}, mos, n_boot=20)
    assert (report.out_dir / OUTPUT_MARKER).is_file()
    with pytest.raises(InputError, match="--overwrite"):
        write_report(tmp_path / "rep", {"m": mos + 0.1}, mos, n_boot=20)
    write_report(tmp_path / "rep", {"m": mos + 0.1}, mos, n_boot=20, overwrite=True)


def test_eval_votes_keep_text_raters_under_every_name_it_accepts(tmp_path: Path) -> None:
    # qalign eval has no id-column options: it finds the vote columns only under names read_table
    # reads as text (item/path/image/img_path, rater/rater_id/subject/worker_id), in any case.
    from toolkit.evaluation import match_votes
    from toolkit.evaluation.model_comparison import _read_votes

    votes = write_votes(tmp_path / "votes.csv", ("Image", "Worker_ID", "vote"))
    matched = match_votes(_read_votes(votes), [f"clip{i}" for i in range(6)], n_splits=5)
    assert matched.n_raters == 4  # "007" and "7" stay two raters
