"""The three loss modes on the tiny model: level cross-entropy, soft labels, direct scores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from toolkit.errors import InputError
from toolkit.models.loading import load_backbone
from toolkit.models.tiny import build_tiny_model
from toolkit.training import TrainConfig, TrainResult, load_training_data, train
from toolkit.training.data import score_answer
from toolkit.training.losses import Collate, get_loss
from toolkit.training.predict import parse_score, predict_scores

from conftest import ONEALIGN_TINY as ONEALIGN
from fixtures_training import write_toy


@pytest.fixture(scope="module")
def votes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("votes")
    return {
        "root": root,
        "model": build_tiny_model(root / "tiny"),
        "train": write_toy(root, "train", 128, seed=1, votes=True),
        "heldout": write_toy(root, "heldout", 32, seed=2, votes=True),
    }


def _run(votes: dict[str, Path], loss: str, steps: int = 60, **kw: object) -> TrainResult:
    values: dict[str, object] = dict(
        model=str(votes["model"]),
        data=str(votes["train"]),
        out=str(votes["root"] / loss),
        mode="full",
        lr=2e-3,
        max_steps=steps,
        batch_size=16,
        loss=loss,
        eval_data=str(votes["heldout"]),
        device="cpu",
        cpu_threads=1,
    )
    values.update(kw)
    return train(TrainConfig(**values))  # type: ignore[arg-type]


def test_soft_labels_lower_the_kl_to_the_vote_histograms(votes: dict[str, Path]) -> None:
    soft, ce = _run(votes, "soft"), _run(votes, "ce")
    before = soft.heldout[0]
    assert before.kl is not None and before.kl == ce.heldout[0].kl  # same start
    after_soft, after_ce = soft.heldout[-1], ce.heldout[-1]
    # Checked over seeds: soft goes from about 0.8 to 0.14; one-hot levels make the predicted
    # distributions peaked, which moves them away from spread-out histograms.
    assert after_soft.kl < before.kl / 2
    assert after_soft.kl < after_ce.kl
    assert after_soft.srcc is not None and after_soft.srcc > 0.7  # it still ranks the items


def test_soft_label_loss_is_the_kl_plus_the_other_tokens(votes: dict[str, Path]) -> None:
    backbone = load_backbone(votes["model"])
    data = load_training_data(votes["heldout"])
    examples = [data[i] for i in range(4)]
    batch = Collate(backbone, "soft")(examples)
    with torch.no_grad():
        soft = get_loss("soft")(backbone.model, backbone, batch)
        out = backbone.model(**{k: v for k, v in batch.items() if not k.startswith("target_")})
        level, found = backbone.answer_level_logits(batch, out.logits)
    assert found.all()
    p = torch.tensor([ex.level_distribution for ex in examples], dtype=torch.float32)
    kl = (torch.special.xlogy(p, p) - p * level.log_softmax(-1)).sum(-1).mean()
    # The text part: the cross-entropy of the answer tokens other than the level word.
    labels = batch["labels"].clone()
    rows = torch.arange(4)
    is_level = (labels.unsqueeze(-1) == torch.tensor(backbone.level_token_ids)).any(-1)
    labels[rows, is_level.float().argmax(1)] = -100
    text = torch.nn.functional.cross_entropy(
        out.logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100
    )
    assert soft.item() == pytest.approx((kl + text).item(), abs=1e-5)


def test_soft_loss_needs_a_level_per_record(votes: dict[str, Path], tmp_path: Path) -> None:
    record = json.loads(votes["heldout"].read_text())[0]
    record.pop("level_probs")
    record["conversations"][1]["value"] = "The quality of the image is 3.5."
    (tmp_path / "bad.json").write_text(json.dumps([record]))
    with pytest.raises(InputError, match="soft-label loss needs level_probs"):
        train(
            TrainConfig(
                model=str(votes["model"]),
                data=str(tmp_path / "bad.json"),
                images=str(votes["root"]),
                out=str(tmp_path / "o"),
                loss="soft",
                max_steps=1,
                device="cpu",
            )
        )


def test_score_answers_and_targets(votes: dict[str, Path], tmp_path: Path) -> None:
    assert score_answer("The quality of the image is good.", 3.4167) == "The quality of the image is 3.42."
    assert score_answer("The aesthetics of the video is bad.", 1.0) == "The aesthetics of the video is 1.00."
    with pytest.raises(InputError, match="no level word"):
        score_answer("It looks fine.", 3.0)
    assert parse_score("4.25.") == 4.25 and parse_score(" 3.") == 3.0 and np.isnan(parse_score("good."))

    data = load_training_data(votes["heldout"])
    scored = data.with_score_answers()
    expected = [float(np.dot(r.level_probs, [5, 4, 3, 2, 1])) for r in data.records]
    np.testing.assert_allclose(scored.score_targets(), expected)  # the votes' mean on the five levels
    assert scored[0].answer == f"The quality of the image is {expected[0]:.2f}." and scored[0].score == expected[0]
    # A 0-100 MOS without votes: mapped from the data's own range to 1-5.
    records = json.loads(votes["heldout"].read_text())[:3]
    for r, mos in zip(records, (20.0, 60.0, 100.0)):
        r.pop("level_probs")
        r["gt_score"] = mos
    (tmp_path / "mos.json").write_text(json.dumps(records))
    assert load_training_data(tmp_path / "mos.json", images=votes["root"]).score_targets() == [1.0, 3.0, 5.0]


def test_the_direct_score_baseline_trains_and_scores(votes: dict[str, Path], tmp_path: Path) -> None:
    # Integer MOS (no votes) so that the numbers are learnable by a from-scratch model in 200 steps.
    train_file = write_toy(tmp_path, "train", 128, seed=1)
    heldout = write_toy(tmp_path, "heldout", 32, seed=2)
    result = train(
        TrainConfig(
            model=str(votes["model"]),
            data=str(train_file),
            out=str(tmp_path / "score"),
            mode="full",
            lr=2e-3,
            max_steps=200,
            batch_size=16,
            loss="score",
            eval_data=str(heldout),
            device="cpu",
            cpu_threads=1,
        )
    )
    before, after = result.heldout[0], result.heldout[-1]
    assert before.failed == 32  # an untrained model writes no number
    assert after.failed == 0 and after.srcc is not None and after.srcc > 0.6
    data = load_training_data(heldout)
    examples = [data[i] for i in range(8)]
    pred = predict_scores(
        result.backbone, [e.frames for e in examples], ["quality"] * 8, ["image"] * 8, method="generate"
    )
    assert pred.failed == 0 and all(1.0 <= s <= 5.0 for s in pred.scores)
    assert all(t.split(".")[0].isdigit() for t in pred.texts)  # "4.00." and the like


def test_gradient_checkpointing_and_bf16_run(votes: dict[str, Path]) -> None:
    plain = _run(votes, "ce", steps=2, eval_data=None, out=str(votes["root"] / "plain"))
    checkpointed = _run(
        votes, "ce", steps=2, eval_data=None, out=str(votes["root"] / "gc"), gradient_checkpointing=True
    )
    np.testing.assert_allclose(checkpointed.losses, plain.losses, rtol=1e-5)  # same numbers, less memory
    bf16 = _run(votes, "ce", steps=2, eval_data=None, out=str(votes["root"] / "bf16"), dtype="bf16")
    assert bf16.losses != plain.losses  # autocast ran in bfloat16...
    np.testing.assert_allclose(bf16.losses, plain.losses, rtol=5e-2)  # ...and stays close


def test_both_prediction_methods_run_on_the_native_onealign_model() -> None:
    from PIL import Image

    backbone = load_backbone(ONEALIGN)
    image = Image.open(ONEALIGN / "images" / "img0_gradient_64x64.png").convert("RGB")
    frames = [Image.open(ONEALIGN / "images" / f"video_frame{i}_72x40.png").convert("RGB") for i in range(4)]
    visuals = [[image], frames, frames[:2], [image]]  # videos of different lengths in one call
    tasks, kinds = ["quality", "quality", "quality", "aesthetics"], ["image", "video", "video", "image"]
    levels = predict_scores(backbone, visuals, tasks, kinds, method="levels")
    assert levels.scores.shape == (4,) and np.all((levels.scores >= 1) & (levels.scores <= 5))
    # The reference score() of image 0 (quality): the expectation of the five level probabilities.
    expected = json.loads((ONEALIGN / "expected.json").read_text())["images"]["img0_gradient_64x64.png"]["quality"][
        "score_1_to_5"
    ]
    assert levels.scores[0] == pytest.approx(expected, abs=1e-4)
    generated = predict_scores(backbone, visuals, tasks, kinds, method="generate", max_new_tokens=4)
    assert len(generated.texts) == 4 and all(isinstance(t, str) for t in generated.texts)
    assert generated.failed == int(np.isnan([parse_score(t) for t in generated.texts]).sum())
