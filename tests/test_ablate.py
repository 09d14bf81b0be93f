"""``qalign ablate``: three training targets, one budget, one report."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from toolkit.errors import InputError
from toolkit.models.tiny import build_tiny_model
from toolkit.training import TrainConfig
from toolkit.training.ablation import run_ablation

from fixtures_training import write_toy


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ablate")
    return {
        "root": root,
        "model": build_tiny_model(root / "tiny"),
        "train": write_toy(root, "train", 128, seed=1, votes=True),
        "test": write_toy(root, "test", 48, seed=2, votes=True),
    }


def test_ablate_writes_the_report_of_the_three_targets(toy: dict[str, Path]) -> None:
    from toolkit.cli import app

    out = toy["root"] / "out"
    args = [
        "ablate",
        "--model",
        str(toy["model"]),
        "--train",
        str(toy["train"]),
        "--test",
        str(toy["test"]),
        "--out",
        str(out),
        "--steps",
        "60",
        "--mode",
        "full",
        "--lr",
        "2e-3",
        "--batch-size",
        "16",
        "--device",
        "cpu",
        "--cpu-threads",
        "1",
        "--n-boot",
        "200",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "report ->" in result.output

    report = json.loads((out / "report.json").read_text())
    names = ["levels (ce)", "soft labels (soft)", "direct score (score)"]
    assert list(report["sets"]) == names
    assert [(c["a"], c["b"]) for c in report["comparisons"]] == [(names[0], names[1]), (names[0], names[2])]
    md = (out / "report.md").read_text()
    assert "## direct score (score) vs levels (ce)" in md and "Same budget for every arm" in md
    assert len(list(out.glob("scatter_*.png"))) == 3

    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert len(rows) == 48 and set(names) <= set(rows[0]) and "score_answer" in rows[0]
    summary = json.loads((out / "ablation.json").read_text())
    assert [a["loss"] for a in summary["arms"]] == ["ce", "soft", "score"]
    assert all(a["steps"] == 60 for a in summary["arms"])
    for loss in ("ce", "soft", "score"):
        assert json.loads((out / "runs" / loss / "qalign_train.json").read_text())["config"]["loss"] == loss
    # The paper's contrast on this data (deterministic on one thread; margins of 0.1 or more).
    srcc = {name: report["sets"][name]["metrics"]["srcc"]["value"] for name in names}
    assert srcc["levels (ce)"] > srcc["direct score (score)"] + 0.3
    assert srcc["soft labels (soft)"] > srcc["direct score (score)"] + 0.3


def test_an_arm_that_ranks_nothing_is_left_out_with_a_note(toy: dict[str, Path]) -> None:
    # One step: the score model writes no number yet, so every item gets the midpoint.
    base = TrainConfig(
        model=str(toy["model"]),
        data=str(toy["train"]),
        mode="full",
        max_steps=1,
        batch_size=8,
        device="cpu",
        cpu_threads=1,
    )
    result = run_ablation(base, toy["test"], toy["root"] / "short", losses=["ce", "score"])
    assert list(result.predictions) == ["levels (ce)"]
    assert result.arms[1].failed == 48
    assert any("48 of 48 answers held no number" in n for n in result.notes)
    assert any("left out of the comparison" in n for n in result.notes)
    with pytest.raises(InputError, match="two or more"):
        run_ablation(base, toy["test"], toy["root"] / "one", losses=["ce"])
