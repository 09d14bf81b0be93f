"""PaliGemma as a Q-Align backbone: prefix-LM token types, the scoring position, no answer leak, training."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from toolkit.errors import ToolkitError
from toolkit.models.base import QAlignBackbone, TrainingExample
from toolkit.models.loading import load_backbone
from toolkit.models.paligemma import PaliGemmaBackbone
from toolkit.models.tiny_families import build_tiny_family
from toolkit.qalign import IGNORE_INDEX, LEVELS, expected_score, level_softmax
from toolkit.training import TrainConfig, train
from toolkit.training.predict import predict_scores

from fixtures_training import QUESTIONS, write_toy

QUESTION = QUESTIONS["quality"]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_family("paligemma", tmp_path_factory.mktemp("paligemma") / "model", seed=1)


def load_tiny_paligemma(folder: Path) -> tuple[Any, Any]:
    """``(model, processor)`` of the tiny build, reloaded with the Auto classes."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    return AutoModelForImageTextToText.from_pretrained(folder).eval(), AutoProcessor.from_pretrained(folder)


def _backbone(folder: Path) -> PaliGemmaBackbone:
    return PaliGemmaBackbone(*load_tiny_paligemma(folder))


@pytest.fixture(scope="module")
def backbone(tiny_dir: Path) -> PaliGemmaBackbone:
    return _backbone(tiny_dir)


def _images(n: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (24 + 9 * i, 40 - 5 * i, 3), dtype=np.uint8)) for i in range(n)]


def _tokens(backbone: PaliGemmaBackbone, ids: torch.Tensor) -> list[str]:
    tokens = backbone.tokenizer.convert_ids_to_tokens(ids.tolist())
    assert isinstance(tokens, list)
    return tokens


def _example(image: Image.Image, level: str, punctuation: str = ".") -> TrainingExample:
    return TrainingExample(
        frames=[image], question=QUESTION, answer=f"The quality of the image is {level}{punctuation}"
    )


# --------------------------------------------------------------------------- scoring


def test_scoring_batch_puts_the_stem_in_the_suffix(backbone: PaliGemmaBackbone) -> None:
    assert backbone.processor.chat_template is None  # PaliGemma is prompted without one
    (img,) = _images(1)
    batch = backbone.scoring_batch([[img]], "quality", "image")
    assert "labels" not in batch
    ids, types, mask = batch["input_ids"][0], batch["token_type_ids"][0], batch["attention_mask"][0]
    assert mask.all()
    stem = backbone.stem_token_ids("quality", "image")
    n_image = backbone.processor.image_seq_length
    # Prefix: the image tokens, <bos>, the question, the processor's newline; then the stem, causal.
    prefix = backbone.tokenizer("How would you rate the quality of this image?\n", add_special_tokens=False)
    assert (
        ids.tolist()
        == [backbone.processor.image_token_id] * n_image
        + [backbone.tokenizer.bos_token_id]
        + prefix["input_ids"]
        + stem
    )
    assert types.tolist() == [0] * (len(ids) - len(stem)) + [1] * len(stem)
    assert _tokens(backbone, ids[-len(stem) - 1 :]) == ["Ċ", "The", "Ġquality", "Ġof", "Ġthe", "Ġimage", "Ġis"]
    assert backbone.tokenizer.eos_token_id not in ids.tolist()  # the processor's suffix <eos> is cut
    assert backbone.scoring_prompt("quality", "image") == (
        "<image><bos>How would you rate the quality of this image?\nThe quality of the image is"
    )


def test_the_stem_is_the_start_of_every_training_answer(backbone: PaliGemmaBackbone) -> None:
    for task in ("quality", "aesthetics"):
        stem = backbone.stem_token_ids(task, "video")
        for word, level_id in zip(LEVELS, backbone.level_token_ids):
            answer = backbone.tokenizer(f"The {task} of the video is {word}.", add_special_tokens=False)["input_ids"]
            assert answer[: len(stem) + 1] == stem + [level_id]


def test_probabilities_sum_to_one_and_a_batch_scores_like_its_items(backbone: PaliGemmaBackbone) -> None:
    imgs = _images(4, seed=1)
    visuals = [[imgs[0]], [imgs[1], imgs[2], imgs[3]], [imgs[2]], [imgs[3], imgs[0]]]  # 1, 3, 1, 2 frames
    batch = backbone.scoring_batch(visuals, "quality", "video")
    assert (batch["attention_mask"][:, -1] == 1).all() and (batch["attention_mask"][0, 0] == 0).item()
    together = backbone.level_logits(batch)
    assert together.shape == (4, 5) and together.dtype == torch.float32
    probs = level_softmax(together)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    assert np.all((expected_score(probs) >= 1) & (expected_score(probs) <= 5))
    alone = torch.cat([backbone.level_logits(backbone.scoring_batch([v], "quality", "video")) for v in visuals])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=0)
    # The logits are those of a plain forward over the unpadded prompt, read at its last position.
    single = backbone.scoring_batch([visuals[1]], "quality", "video")
    with torch.no_grad():
        full = backbone.model(**single).logits
    torch.testing.assert_close(alone[1], full[0, -1, backbone.level_token_ids], atol=1e-6, rtol=0)


def test_the_scorer_scores_files_with_the_backbone(backbone: PaliGemmaBackbone, tmp_path: Path) -> None:
    from toolkit.scoring import PROB_COLUMNS, Scorer

    for i, img in enumerate(_images(5, seed=5)):
        img.save(tmp_path / f"img{i}.png")
    scorer = Scorer(backbone, batch_size=4, progress=False)
    batched = scorer.score([tmp_path])
    assert (batched["error"] == "").all() and len(batched) == 5
    assert batched["score"].nunique() == 5  # the images reach the model
    probs = batched[list(PROB_COLUMNS)].to_numpy(dtype=float)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-9)
    np.testing.assert_allclose(batched["score"], probs @ np.array([5.0, 4.0, 3.0, 2.0, 1.0]), atol=1e-9)
    single = scorer.score([tmp_path], batch_size=1)
    np.testing.assert_allclose(probs, single[list(PROB_COLUMNS)].to_numpy(dtype=float), atol=1e-5)


# --------------------------------------------------------------------------- training batches


def test_training_labels_cover_exactly_the_answer(backbone: PaliGemmaBackbone) -> None:
    imgs = _images(3, seed=2)
    examples = [
        _example(imgs[0], "good"),
        TrainingExample(
            frames=[imgs[1], imgs[2]],
            question="Rate the quality of this video.",
            answer=" The quality of the video is bad. ",
            kind="video",
        ),
    ]
    batch = backbone.training_batch(examples)
    ids, labels, types, mask = batch["input_ids"], batch["labels"], batch["token_type_ids"], batch["attention_mask"]
    assert (mask[:, 0] == 1).all() and (mask[0, -1] == 0).item()  # right padding
    for row, answer in enumerate(["The quality of the image is good.", "The quality of the video is bad."]):
        supervised = labels[row] != IGNORE_INDEX
        assert backbone.tokenizer.decode(ids[row][supervised]) == answer + "<eos>"
        assert torch.equal(supervised, types[row] == 1)  # the suffix, and nothing else, is causal and trained
        first = int(supervised.nonzero()[0])
        assert _tokens(backbone, ids[row][first - 1 : first + 1]) == ["Ċ", "The"]  # the newline is prefix
    assert (labels[mask == 0] == IGNORE_INDEX).all()
    text = backbone.tokenizer.decode(ids[0][mask[0].bool()])
    assert "<|image|>" not in text and text.count("<image>") == backbone.processor.image_seq_length


def test_token_types_do_not_depend_on_the_tokenizer_pair_template(tiny_dir: Path) -> None:
    # A tokenizer whose pair template leaves the suffix at type 0 (everything bidirectional).
    from tokenizers import processors

    model, processor = load_tiny_paligemma(tiny_dir)
    processor = copy.deepcopy(processor)
    processor.tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="$A:0", pair="$A:0 $B:0", special_tokens=[]
    )
    (img,) = _images(1, seed=3)
    raw = processor(text=["<image>Q"], images=[[img]], suffix=["The quality of the image is good."])
    assert max(raw["token_type_ids"][0]) == 0
    reference = _backbone(tiny_dir).training_batch([_example(img, "good")])
    batch = PaliGemmaBackbone(model, processor).training_batch([_example(img, "good")])
    assert int(batch["token_type_ids"].sum()) == 9  # "The quality of the image is good." and <eos>
    for key in ("input_ids", "token_type_ids", "labels"):
        assert torch.equal(batch[key], reference[key])


def test_answer_tokens_do_not_leak_into_earlier_positions(backbone: PaliGemmaBackbone) -> None:
    (img,) = _images(1, seed=4)
    variants = [_example(img, "good"), _example(img, "bad"), _example(img, "good", "!")]
    batch = backbone.training_batch(variants)
    ids = batch["input_ids"]
    with torch.no_grad():
        logits = backbone.model(**batch).logits
        # The buggy layout (every token type 0: the whole sequence is one bidirectional prefix).
        leaky = backbone.model(**{**batch, "token_type_ids": torch.zeros_like(ids)}).logits
    for other in (1, 2):
        changed = int((ids[0] != ids[other]).nonzero()[0])  # the level word, then the final punctuation
        assert changed > int((batch["labels"][0] != IGNORE_INDEX).nonzero()[0])  # inside the answer
        torch.testing.assert_close(logits[other, :changed], logits[0, :changed], atol=1e-6, rtol=0)
        assert (leaky[other, :changed] - leaky[0, :changed]).abs().max() > 1e-4  # the check can fail
    # Under teacher forcing the level logits are the scoring logits.
    level, found = backbone.answer_level_logits(batch, logits)
    assert found.all()
    scoring = backbone.level_logits(backbone.scoring_batch([[img]], "quality", "image"))
    for row in range(3):
        torch.testing.assert_close(level[row], scoring[0], atol=1e-5, rtol=0)


def test_a_processor_that_is_not_paligemmas_is_refused(backbone: PaliGemmaBackbone) -> None:
    with pytest.raises(ToolkitError, match="not a PaliGemma processor"):
        PaliGemmaBackbone(backbone.model, backbone.tokenizer)


# --------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("paligemma-toy")
    return {
        "root": root,
        "train": write_toy(root, "train", 64, seed=1),
        "heldout": write_toy(root, "heldout", 16, seed=2),
    }


def _config(tiny_dir: Path, toy: dict[str, Path], out: Path, **kw: object) -> TrainConfig:
    values: dict[str, object] = dict(
        model=str(tiny_dir), data=str(toy["train"]), out=str(out), device="cpu", cpu_threads=1, batch_size=8
    )
    values.update(kw)
    return TrainConfig(**values)  # type: ignore[arg-type]


def _heldout_images(toy: dict[str, Path]) -> list[list[Image.Image]]:
    return [[Image.open(p).convert("RGB")] for p in sorted((toy["root"] / "img").glob("heldout_*.png"))[:6]]


def _level_mass(bb: PaliGemmaBackbone, visuals: list[list[Image.Image]]) -> torch.Tensor:
    """Probability (over the whole vocabulary) that the scoring position puts on the five level words."""
    batch = bb._to_device(bb.scoring_batch(visuals, "quality", "image"))
    with torch.no_grad():
        full = bb.model(**batch, logits_to_keep=1).logits[:, -1].softmax(-1)
    return full[:, bb.level_token_ids].sum(-1)


def test_full_training_lowers_the_loss_and_the_model_scores(tiny_dir: Path, toy: dict[str, Path]) -> None:
    bb = _backbone(tiny_dir)
    visuals = _heldout_images(toy)
    untrained = _level_mass(bb, visuals)
    result = train(
        _config(tiny_dir, toy, toy["root"] / "full", mode="full", lr=1e-2, max_steps=30, eval_data=str(toy["heldout"])),
        backbone=bb,
    )
    assert result.steps == 30 and result.trainable_parameters == result.total_parameters
    assert np.mean(result.losses[:3]) > 5.0  # random init: about ln(vocabulary)
    assert result.final_loss < np.mean(result.losses[:3]) / 4
    before, after = result.heldout[0], result.heldout[-1]
    assert after.loss < before.loss / 4
    # It scores: the stem's last position, which predicted any of ~1600 tokens, now predicts a level word.
    assert float(untrained.max()) < 0.05 and float(_level_mass(bb, visuals).min()) > 0.5
    probs = level_softmax(bb.level_logits(bb.scoring_batch(visuals, "quality", "image")))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    # Greedy decoding after the scoring prompt (new tokens are suffix tokens) writes a level word.
    pred = predict_scores(bb, visuals, ["quality"] * len(visuals), ["image"] * len(visuals), method="generate")
    assert all(text.split()[0].strip(".") in LEVELS for text in pred.texts), pred.texts


def test_lora_adapter_reloads_and_merges(tiny_dir: Path, toy: dict[str, Path]) -> None:
    out = toy["root"] / "lora"
    result = train(  # the run loads the model by itself: the loader picks PaliGemma's backbone
        _config(
            tiny_dir,
            toy,
            out,
            mode="lora",
            lr=5e-2,
            max_steps=4,
            lora_r=4,
            lora_alpha=8,
            lora_dropout=0.0,
            trainable_modules=["multi_modal_projector"],
        )
    )
    assert isinstance(result.backbone, PaliGemmaBackbone)
    assert 0 < result.trainable_parameters < result.total_parameters / 5
    assert (out / "adapter_config.json").is_file() and not (out / "model.safetensors").exists()
    visuals = _heldout_images(toy)

    def logits(b: QAlignBackbone) -> torch.Tensor:
        return b.level_logits(b.scoring_batch(visuals, "quality", "image"))

    trained = logits(result.backbone)
    base = logits(_backbone(tiny_dir))
    with_adapter = load_backbone(tiny_dir, adapter=out)
    assert isinstance(with_adapter, PaliGemmaBackbone)
    torch.testing.assert_close(logits(with_adapter), trained, atol=1e-5, rtol=0)
    merged = load_backbone(tiny_dir, adapter=out, merge=True)
    assert isinstance(merged, PaliGemmaBackbone) and not hasattr(merged.model, "peft_config")
    torch.testing.assert_close(logits(merged), trained, atol=1e-4, rtol=0)
    assert (base - trained).abs().max() > 1e-3  # the adapter changed the model
