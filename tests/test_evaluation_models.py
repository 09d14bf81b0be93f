"""Models x test sets: ``evaluate_models`` on two tiny models, calibration, noise ceiling from
votes, and ``qalign eval --model ... --test ...``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from toolkit.analysis import prepare_votes, split_half_agreement
from toolkit.cli import app
from toolkit.errors import InputError
from toolkit.evaluation import (
    ModelSpec,
    agreement,
    calibration,
    evaluate_models,
    evaluate_test_set,
    kl_divergence,
    load_test_set,
    model_specs,
    paired_bootstrap,
)
from toolkit.evaluation.model_comparison import default_loader
from toolkit.levels import LEVELS

BOOT = 200
PROBS = [f"p_{w}" for w in LEVELS]


def write_images(folder: Path, n: int) -> list[str]:
    """Images with a flat band of growing height over noise (something a random model reacts to)."""
    rng = np.random.default_rng(7)
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(n):
        arr = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        arr[: 3 * i] = 90 + 10 * i
        name = f"img{i:02d}.png"
        Image.fromarray(arr).save(folder / name)
        names.append(name)
    return names


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from toolkit.models.tiny import build_tiny_model

    root = tmp_path_factory.mktemp("evalmodels")
    models = [build_tiny_model(root / "m0", seed=0), build_tiny_model(root / "m1", seed=1)]
    names = write_images(root / "imgs", 11)
    mos = 1.0 + 4.0 * np.arange(11) / 10
    # Test set A: Q-Align JSON with string scores and one missing file; B: a MOS table.
    records = [{"image": n, "gt_score": f"{m:.3f}"} for n, m in zip(names[:7], mos[:7])]
    records.append({"image": "gone.png", "gt_score": "3.0"})
    (root / "imgs" / "koniq_like.json").write_text(json.dumps(records))
    pd.DataFrame({"path": names[4:], "mos": mos[4:]}).to_csv(root / "imgs" / "mine.csv", index=False)
    rng = np.random.default_rng(11)
    votes = pd.DataFrame(
        [
            {"item": n, "rater": f"r{r}", "vote": int(np.clip(np.rint(m + rng.normal(0, 0.8)), 1, 5))}
            for n, m in zip(names, mos)
            for r in range(8)
        ]
    )
    votes.to_csv(root / "votes.csv", index=False)

    loads: list[str] = []
    real = default_loader(device="cpu", progress=False)

    def counting(spec: ModelSpec):
        loads.append(spec.label)
        return real(spec)

    specs = [ModelSpec(str(models[0]), name="base"), ModelSpec(str(models[1]), name="tuned")]
    report = evaluate_models(
        specs,
        [root / "imgs" / "koniq_like.json", root / "imgs" / "mine.csv"],
        root / "report",
        votes=root / "votes.csv",
        n_boot=BOOT,
        seed=3,
        load=counting,
        progress=False,
    )
    return dict(root=root, models=models, report=report, loads=loads, votes=votes, mos=mos, names=names)


def test_report_has_a_section_per_test_set_and_loads_each_model_once(setup):
    report, root = setup["report"], setup["root"]
    assert setup["loads"] == ["base", "tuned"]  # one load per model, reused across both test sets
    out = root / "report"
    md = (out / "report.md").read_text()
    assert md.startswith("# Model evaluation\n")
    for name in ("koniq_like", "mine"):
        assert f"## Test set: {name}" in md
        for png in ("scatter_base.png", "scatter_tuned.png", "reliability.png"):
            with Image.open(out / name / png) as image:
                assert image.format == "PNG"
            assert f"({name}/{png})" in md
        for model in ("base", "tuned"):
            assert (out / "scores" / name / f"{model}.csv").is_file()
    assert md.count("### tuned vs base") == 2 and md.count("### Calibration") == 2
    data = json.loads((out / "report.json").read_text())
    assert [m["name"] for m in data["models"]] == ["base", "tuned"] and data["reference"] == "base"
    a = data["test_sets"]["koniq_like"]
    assert a["n_items"] == 8 and a["n_evaluated"] == 7  # the missing file is left out, with a note
    assert any("1 item(s) could not be scored" in n for n in a["notes"])
    assert set(a["sets"]) == {"base", "tuned"}
    comp = a["comparisons"][0]
    assert (comp["a"], comp["b"]) == ("base", "tuned") and set(comp["differences"]) >= {"srcc", "plcc_logistic"}
    assert data["test_sets"]["mine"]["n_evaluated"] == 7
    assert report.tests["mine"].calibration["base"].observed_from == "vote histogram"


def test_values_equal_metrics_recomputed_from_the_score_files(setup):
    root, report = setup["root"], setup["report"]
    data = json.loads((root / "report" / "report.json").read_text())
    for test in ("koniq_like", "mine"):
        truth = pd.Series(setup["mos"], index=[str(root / "imgs" / n) for n in setup["names"]])
        preds = {}
        for model in ("base", "tuned"):
            scores = pd.read_csv(root / "report" / "scores" / test / f"{model}.csv").dropna(subset=["score"])
            scores = scores[scores["path"].isin(truth.index)]
            preds[model] = scores["score"].to_numpy()
            mos = truth.loc[scores["path"]].to_numpy()
            expected = agreement(preds[model], mos, n_boot=BOOT, seed=3)
            got = data["test_sets"][test]["sets"][model]["metrics"]
            for metric in ("srcc", "krcc", "plcc", "plcc_logistic", "rmse"):
                assert got[metric]["value"] == pytest.approx(expected[metric].value, abs=1e-9)
                assert got[metric]["ci_low"] == pytest.approx(expected[metric].ci_low, abs=1e-9)
            probs = scores[PROBS].to_numpy()
            assert np.allclose(report.tests[test].probabilities[model], probs)
        diff = paired_bootstrap(preds["base"], preds["tuned"], mos, n_boot=BOOT, seed=3)["srcc"]
        got = data["test_sets"][test]["comparisons"][0]["differences"]["srcc"]
        assert got["diff"] == pytest.approx(diff.diff) and got["p_value"] == pytest.approx(diff.p_value)


def test_noise_ceiling_from_the_votes_of_the_test_items(setup):
    report, votes = setup["report"], setup["votes"]
    mine = report.tests["mine"]
    of_test = votes[votes["item"].isin(setup["names"][4:])]
    expected = split_half_agreement(prepare_votes(of_test.reset_index(drop=True)), n_splits=200, seed=3)
    assert mine.noise_ceiling.value == pytest.approx(expected.srcc)
    assert (mine.noise_ceiling.ci_low, mine.noise_ceiling.ci_high) == pytest.approx(expected.srcc_ci)
    assert mine.votes == {"n_votes": 56, "n_raters": 8, "n_items": 7}
    md = (setup["root"] / "report" / "report.md").read_text()
    assert f"**Noise ceiling** (inter-rater split-half SRCC): {expected.srcc:.4f}" in md
    # Calibration against the vote histograms of the same items.
    counts = of_test.pivot_table(index="item", columns="vote", aggfunc="size", fill_value=0).reindex(
        columns=[5, 4, 3, 2, 1], fill_value=0
    )
    observed = counts.to_numpy(dtype=float) / counts.to_numpy().sum(axis=1, keepdims=True)
    predicted = mine.probabilities["tuned"]
    assert mine.calibration["tuned"].mean_kl == pytest.approx(kl_divergence(observed, predicted).mean())


def test_calibration_on_a_hand_made_case():
    predicted = np.array([[0.5, 0.5, 0.0, 0.0, 0.0], [0.1, 0.2, 0.7, 0.0, 0.0]])
    observed = np.array([[1.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0, 0.0]])
    cal = calibration(predicted, observed, levels=np.array([5, 3]), observed_from="MOS level (one-hot)")
    # per level, items binned by predicted probability (10 bins), |mean p - mean observed| weighted by bin size:
    # excellent: bins 0.5 and 0.1 -> (0.5 + 0.1) / 2; good: (0.5 + 0.2) / 2; fair: (0 + 0.3) / 2; poor, bad: 0
    assert cal.ece_per_level == pytest.approx({"excellent": 0.30, "good": 0.35, "fair": 0.15, "poor": 0.0, "bad": 0.0})
    assert cal.ece == pytest.approx((0.30 + 0.35 + 0.15) / 5)
    assert cal.mean_kl == pytest.approx((-np.log(0.5) - np.log(0.7)) / 2)  # one-hot: the NLL of the observed level
    bins = cal.reliability["excellent"]
    assert [(b.low, b.count, b.mean_predicted, b.mean_observed) for b in bins] == [
        (0.1, 1, 0.1, 0.0),
        (0.5, 1, 0.5, 1.0),
    ]
    assert [(b.level, b.count) for b in cal.level_bins] == [("excellent", 1), ("fair", 1)]

    perfect = calibration(observed * 0.5 + 0.1, observed * 0.5 + 0.1)
    assert perfect.mean_kl == pytest.approx(0.0, abs=1e-12) and perfect.ece == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(InputError, match="sums to"):
        calibration(predicted * 2, observed)


def test_a_test_set_without_votes_uses_one_hot_levels(setup, tmp_path):
    root = setup["root"]
    test = load_test_set(root / "imgs" / "mine.csv", low=1, high=5)
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(5), size=len(test))
    frame = pd.DataFrame(probs, columns=PROBS).assign(path=test.files, score=probs @ np.arange(5, 0, -1), error="")
    result = evaluate_test_set(test, {"only": frame}, n_boot=50)
    cal = result.calibration["only"]
    assert cal.observed_from == "MOS level (one-hot)"
    onehot = np.eye(5)[5 - test.levels]
    assert cal.mean_kl == pytest.approx(kl_divergence(onehot, probs).mean())
    assert result.noise_ceiling is None and result.comparisons == []


def test_model_specs_pair_models_and_adapters():
    assert [s.label for s in model_specs(["a/base", "b/other"])] == ["base", "other"]
    one = model_specs(["m/base"], ["none", "runs/lora1", "runs/lora2"])
    assert [(s.adapter, s.label) for s in one] == [
        (None, "base"),
        ("runs/lora1", "base+lora1"),
        ("runs/lora2", "base+lora2"),
    ]
    paired = model_specs(["x/m", "y/m"], ["-", "r/a"], ["before", "after"])
    assert [(s.model, s.adapter, s.label) for s in paired] == [("x/m", None, "before"), ("y/m", "r/a", "after")]
    assert [s.label for s in model_specs(["x/m", "y/m"])] == ["m", "m-2"]
    with pytest.raises(InputError, match="adapter"):
        model_specs(["a", "b", "c"], ["x", "y"])


def test_cli_eval_models_and_v1_with_votes(setup, tmp_path):
    root, (m0, m1) = setup["root"], setup["models"]
    res = CliRunner().invoke(
        app,
        [
            "eval",
            "--model",
            str(m0),
            "--model",
            str(m1),
            "--test",
            str(root / "imgs" / "mine.csv"),
            "--votes",
            str(root / "votes.csv"),
            "--out",
            str(tmp_path / "rep"),
            "--boot",
            "100",
            "--device",
            "cpu",
            "--no-progress",
            "--title",
            "Two tiny models",
        ],
    )
    assert res.exit_code == 0, res.output
    md = (tmp_path / "rep" / "report.md").read_text()
    assert md.startswith("# Two tiny models") and "## Test set: mine" in md and "### m1 vs m0" in md
    assert "mine: noise ceiling" in res.output and "m1 - m0: SRCC" in res.output

    # v1 (score CSVs) picks up the same noise ceiling from the votes.
    scores = [str(tmp_path / "rep" / "scores" / "mine" / f"{m}.csv") for m in ("m0", "m1")]
    res = CliRunner().invoke(
        app,
        [
            "eval",
            *scores,
            "--gt",
            str(root / "imgs" / "mine.csv"),
            "--votes",
            str(root / "votes.csv"),
            "--out",
            str(tmp_path / "v1"),
            "--boot",
            "100",
        ],
    )
    assert res.exit_code == 0, res.output
    v1 = json.loads((tmp_path / "v1" / "report.json").read_text())
    v2 = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert v1["noise_ceiling"]["value"] == pytest.approx(v2["test_sets"]["mine"]["noise_ceiling"]["value"])
    assert v1["sets"]["m1"]["metrics"]["srcc"]["value"] == pytest.approx(
        v2["test_sets"]["mine"]["sets"]["m1"]["metrics"]["srcc"]["value"]
    )

    res = CliRunner().invoke(app, ["eval", "--model", str(m0), "--out", str(tmp_path / "x")])
    assert res.exit_code != 0 and "--test" in str(res.exception)


def test_noise_ceiling_from_a_study_leaves_screened_out_raters_out(setup, tmp_path):
    from toolkit.store import Store, import_votes
    from toolkit.store.raters import set_rater_excluded
    from toolkit.store.setup import StudySetup, setup_study

    from fixtures_ui import sqlite_url

    root, votes = setup["root"], setup["votes"]
    items = setup["names"][4:]
    (root / "imgs" / "study.csv").write_text("path,role\n" + "".join(f"{n},test\n" for n in items))
    url = sqlite_url(tmp_path)
    store = Store(url)
    with store.session() as s:
        study, _ = setup_study(
            s, StudySetup(name="pilot", media_root=root / "imgs", manifest=root / "imgs" / "study.csv")
        )
        of_test = votes[votes["item"].isin(items)]
        noisy = of_test[of_test["rater"] == "r0"].assign(rater="noisy", vote=lambda f: 6 - f["vote"])
        import_votes(s, study, pd.concat([of_test, noisy]))
        set_rater_excluded(s, study, "noisy", True)
    store.dispose()
    scores = [str(root / "report" / "scores" / "mine" / f"{m}.csv") for m in ("base", "tuned")]
    res = CliRunner().invoke(
        app,
        [
            "eval",
            *scores,
            "--gt",
            str(root / "imgs" / "mine.csv"),
            "--study",
            "pilot",
            "--db",
            url,
            "--out",
            str(tmp_path / "rep"),
            "--boot",
            "50",
            "--seed",
            "3",
        ],
    )
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert data["noise_ceiling"]["value"] == pytest.approx(setup["report"].tests["mine"].noise_ceiling.value)
