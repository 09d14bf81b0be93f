"""Report folder (Markdown, JSON, PNG) and the ``qalign eval`` command."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from toolkit.cli import app
from toolkit.errors import InputError
from toolkit.evaluation import MetricResult, load_evaluation_inputs, write_report
from toolkit.files import OUTPUT_MARKER
from toolkit.levels import LEVELS


def _sets(n: int = 120, seed: int = 0):
    rng = np.random.default_rng(seed)
    mos = rng.uniform(0, 100, n)
    after = 1 + 4 / (1 + np.exp(-(mos - 50) / 20)) + rng.normal(0, 0.3, n)
    before = after + rng.normal(0, 1.0, n)
    return mos, {"before": before, "after": after}


def test_report_files_are_written_and_readable(tmp_path):
    mos, preds = _sets()
    ceiling = MetricResult("split_half_srcc", 0.91, 0.88, 0.93, method="bootstrap")
    report = write_report(tmp_path / "rep", preds, mos, noise_ceiling=ceiling, n_boot=200, seed=1, title="KonIQ test")
    names = sorted(p.name for p in (tmp_path / "rep").iterdir() if p.name != OUTPUT_MARKER)
    assert names == ["report.json", "report.md", "scatter_after.png", "scatter_before.png"]
    assert (tmp_path / "rep" / OUTPUT_MARKER).is_file()  # a toolkit output folder, like every command's
    assert sorted(p.name for p in report.files) == names

    data = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert set(data["sets"]) == {"before", "after"}
    srcc = data["sets"]["after"]["metrics"]["srcc"]
    assert srcc["ci_low"] <= srcc["value"] <= srcc["ci_high"]
    assert srcc["value"] == pytest.approx(report.results["after"]["srcc"].value)
    assert data["noise_ceiling"]["value"] == 0.91
    comp = data["comparisons"][0]
    assert (comp["a"], comp["b"]) == ("before", "after")
    assert comp["differences"]["srcc"]["diff"] > 0

    md = (tmp_path / "rep" / "report.md").read_text()
    assert md.startswith("# KonIQ test\n")
    assert "| after | " in md and "| before | " in md
    assert "PLCC (raw)" in md and "PLCC (logistic)" in md
    assert "**Noise ceiling** (inter-rater split-half SRCC): 0.9100 [0.8800, 0.9300]" in md
    assert "## after vs before" in md and "![after: predicted score vs MOS](scatter_after.png)" in md

    with Image.open(tmp_path / "rep" / "scatter_after.png") as png:
        assert png.format == "PNG" and png.size[0] > 300
    # no temporary files left behind
    assert not [p for p in (tmp_path / "rep").iterdir() if p.name.startswith(".") and p.name != OUTPUT_MARKER]


def test_report_with_a_plain_noise_ceiling_and_undefined_values(tmp_path):
    mos, preds = _sets(n=4)
    write_report(tmp_path / "r", {"only": preds["after"]}, mos, noise_ceiling=0.8, n_boot=100)
    data = json.loads((tmp_path / "r" / "report.json").read_text())  # strict JSON: NaN written as null
    assert data["noise_ceiling"]["value"] == 0.8 and data["noise_ceiling"]["ci_low"] is None
    assert data["comparisons"] == []
    assert "split-half SRCC): 0.8000." in (tmp_path / "r" / "report.md").read_text()


def _score_csv(path, paths, scores, gt=None, errors=None):
    frame = pd.DataFrame({"path": paths, "score": scores})
    for word in LEVELS:
        frame[f"p_{word}"] = 0.2
    frame["entropy"] = np.log(5)
    frame["error"] = errors if errors is not None else ""
    if gt is not None:
        frame["gt_score"] = gt
    frame.to_csv(path, index=False)


def test_cli_eval_matches_paths_and_skips_failed_rows(tmp_path):
    mos, preds = _sets(n=60)
    names = [f"img_{i}.jpg" for i in range(60)]
    pd.DataFrame({"img_path": names, "gt_score": [str(m) for m in mos]}).to_json(
        tmp_path / "test.json", orient="records"
    )
    errors = [""] * 60
    errors[7] = "cannot decode"
    abs_paths = [f"/data/koniq/{n}" for n in names]
    _score_csv(tmp_path / "before.csv", abs_paths, preds["before"], errors=errors)
    _score_csv(tmp_path / "after.csv", abs_paths, preds["after"])
    res = CliRunner().invoke(
        app,
        [
            "eval",
            str(tmp_path / "before.csv"),
            str(tmp_path / "after.csv"),
            "--gt",
            str(tmp_path / "test.json"),
            "--out",
            str(tmp_path / "rep"),
            "--boot",
            "150",
            "--noise-ceiling",
            "0.9",
        ],
    )
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert data["sets"]["after"]["n"] == 59  # the failed row is left out of both sets
    assert any("1 row(s) skipped" in note for note in data["notes"])
    keep = np.arange(60) != 7
    from scipy import stats

    expected = stats.spearmanr(preds["after"][keep], mos[keep]).statistic
    assert data["sets"]["after"]["metrics"]["srcc"]["value"] == pytest.approx(expected)
    assert "after - before: SRCC" in res.output


def test_gt_score_inside_the_score_files(tmp_path):
    mos, preds = _sets(n=30)
    names = [f"{i}.png" for i in range(30)]
    _score_csv(tmp_path / "a.csv", names, preds["before"], gt=mos)
    _score_csv(tmp_path / "b.csv", names, preds["after"], gt=mos)
    aligned = load_evaluation_inputs([tmp_path / "a.csv", tmp_path / "b.csv"], names=["before", "after"])
    assert aligned.items == names
    np.testing.assert_allclose(aligned.mos, mos)
    np.testing.assert_allclose(aligned.predictions["after"], preds["after"])
    _score_csv(tmp_path / "c.csv", names, preds["after"], gt=mos + 1)
    with pytest.raises(InputError, match="disagree on gt_score"):
        load_evaluation_inputs([tmp_path / "a.csv", tmp_path / "c.csv"])
    _score_csv(tmp_path / "d.csv", [f"other_{n}" for n in names], preds["after"])
    with pytest.raises(InputError, match="only 0 item"):
        load_evaluation_inputs([tmp_path / "d.csv"], tmp_path / "a.csv")


def test_report_says_why_a_linear_fit_stands_in(tmp_path):
    rng = np.random.default_rng(0)
    mos = rng.uniform(1, 5, 40)
    near_constant = 3 + rng.normal(0, 0.003, 40) - 0.002 * (mos - 3)
    near_constant[np.argsort(mos)[-3:]] = 3.04  # a step the logistic would sit on
    falling = 6 - mos + rng.normal(0, 0.4, 40)
    report = write_report(tmp_path / "rep", {"flat": near_constant, "falling": falling}, mos, n_boot=50)
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "Fit: linear (" in md and "the logistic fit is a step" in md
    assert "flat: predictions are nearly constant" in md
    falling_plcc = report.results["falling"]["plcc_logistic"].value
    assert falling_plcc < 0 and report.results["falling"]["srcc"].value < 0
