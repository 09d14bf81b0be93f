"""The generic Hugging Face backbone and backbone loading, on the offline tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from toolkit.errors import InputError, ToolkitError
from toolkit.levels import LEVELS
from toolkit.models.base import TrainingExample
from toolkit.models.hf import HFVisionLanguageBackbone, level_token_ids
from toolkit.models.loading import load_backbone, resolve_device, resolve_dtype
from toolkit.models.tiny import build_tiny_model


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", seed=3)


@pytest.fixture(scope="module")
def backbone(tiny_dir: Path) -> HFVisionLanguageBackbone:
    bb = load_backbone(tiny_dir)
    assert isinstance(bb, HFVisionLanguageBackbone)
    return bb


def _images(n: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    # Different sizes and aspect ratios: padding to a square must not leak between rows.
    return [Image.fromarray(rng.integers(0, 256, (24 + 9 * i, 40 - 5 * i, 3), dtype=np.uint8)) for i in range(n)]


def test_level_token_ids_decode_to_the_level_words(backbone: HFVisionLanguageBackbone) -> None:
    words = [backbone.tokenizer.decode([i]) for i in backbone.level_token_ids]
    assert words == [" " + w for w in LEVELS]


def test_level_token_ids_reject_a_split_word(backbone: HFVisionLanguageBackbone) -> None:
    class Splitting:
        def __call__(self, text: str, add_special_tokens: bool = False) -> dict:
            return {"input_ids": [1, 2] if "fair" in text else [7]}

        def convert_ids_to_tokens(self, ids: list[int]) -> list[str]:
            return ["Ġf", "air"]

    with pytest.raises(ToolkitError, match="fair"):
        level_token_ids(Splitting())


def test_scoring_prompt_follows_the_contract(backbone: HFVisionLanguageBackbone) -> None:
    assert backbone.scoring_prompt("quality", "image") == (
        "<s>USER: How would you rate the quality of this image?\n<image>\nASSISTANT: The quality of the image is"
    )
    video = backbone.scoring_prompt("aesthetics", "video", n_images=3)
    assert video.count("<image>") == 3
    assert video.endswith("ASSISTANT: The aesthetics of the video is")


def test_level_logits_equal_a_full_forward(backbone: HFVisionLanguageBackbone) -> None:
    (img,) = _images(1)
    batch = backbone.scoring_batch([[img]], "quality", "image")
    got = backbone.level_logits(batch)
    assert got.shape == (1, 5) and got.dtype == torch.float32

    text = backbone.scoring_prompt("quality", "image")
    inputs = backbone.processor(text=[text], images=[[img]], add_special_tokens=False, return_tensors="pt")
    with torch.no_grad():
        full = backbone.model(**inputs).logits  # every position
    assert full.shape[1] == inputs["input_ids"].shape[1]
    torch.testing.assert_close(got[0], full[0, -1, backbone.level_token_ids], atol=1e-6, rtol=0)


def test_left_padded_batch_matches_one_at_a_time(backbone: HFVisionLanguageBackbone) -> None:
    imgs = _images(4, seed=1)
    visuals = [[imgs[0]], [imgs[1], imgs[2], imgs[3]], [imgs[2]], [imgs[3], imgs[0]]]  # 1, 3, 1, 2 frames
    batch = backbone.scoring_batch(visuals, "quality", "video")
    assert (batch["attention_mask"][:, -1] == 1).all()  # answer position is last in every row
    assert (batch["attention_mask"][0, 0] == 0).item()  # short rows are padded on the left
    together = backbone.level_logits(batch)
    alone = torch.cat([backbone.level_logits(backbone.scoring_batch([v], "quality", "video")) for v in visuals])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=0)
    # Frames are attended in order: reversing a video changes its logits.
    reversed_ = backbone.level_logits(backbone.scoring_batch([visuals[1][::-1]], "quality", "video"))
    assert (reversed_ - alone[1]).abs().max() > 1e-6


def test_training_batch_supervises_only_the_answer(backbone: HFVisionLanguageBackbone) -> None:
    imgs = _images(3, seed=2)
    examples = [
        TrainingExample(
            frames=[imgs[0]],
            question="How would you rate the quality of this image?\n<|image|>",
            answer="The quality of the image is good.",
        ),
        TrainingExample(
            frames=[imgs[1], imgs[2]],
            question="Rate the quality of this video.",
            answer="The quality of the video is bad.",
            kind="video",
        ),
    ]
    batch = backbone.training_batch(examples)
    ids, labels, mask = batch["input_ids"], batch["labels"], batch["attention_mask"]
    assert ids.shape == labels.shape == mask.shape
    assert batch["pixel_values"].shape[0] == 3
    assert (mask[:, 0] == 1).all() and (mask[0, -1] == 0).item()  # right padding
    for row, ex in zip(range(2), examples):
        supervised = labels[row][labels[row] != -100]
        assert backbone.tokenizer.decode(supervised) == " " + ex.answer + "</s>"
        assert torch.equal(supervised, ids[row][labels[row] != -100])
    assert (labels[mask == 0] == -100).all()
    # The placeholder in the question is not rendered as text.
    text = backbone.tokenizer.decode(ids[0][mask[0].bool()])
    assert "<|image|>" not in text and text.count("<image>") == 16


def test_teacher_forced_level_logits_match_scoring(backbone: HFVisionLanguageBackbone) -> None:
    # The training conversation, cut before the level word, is the scoring prompt: the level
    # logits under teacher forcing are the scoring logits.
    imgs = _images(2, seed=4)
    examples = [
        TrainingExample(
            frames=[imgs[0]],
            question="How would you rate the quality of this image?",
            answer="The quality of the image is fair.",
        ),
        TrainingExample(
            frames=[imgs[1]],
            question="How would you rate the quality of this image?",
            answer="The score of the image is 3.",
        ),
    ]
    batch = backbone.training_batch(examples)
    with torch.no_grad():
        logits = backbone.model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    level, found = backbone.answer_level_logits(batch, logits)
    assert found.tolist() == [True, False]
    scoring = backbone.level_logits(backbone.scoring_batch([[imgs[0]]], "quality", "image"))
    torch.testing.assert_close(level[0], scoring[0], atol=1e-5, rtol=0)
    assert (level[1] == 0).all()


def test_load_backbone_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InputError, match="neither 'tiny', an existing folder nor a hub id"):
        load_backbone(tmp_path / "missing")
    with pytest.raises(InputError, match="no config.json"):
        load_backbone(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "mplug_owl2"}))
    with pytest.raises(InputError, match="cannot load the OneAlign checkpoint .*no file named model.safetensors"):
        load_backbone(tmp_path)  # a OneAlign config without its weights


def test_tiny_resolves_to_the_cached_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QALIGN_CACHE", str(tmp_path))
    bb = load_backbone("tiny")
    assert isinstance(bb, HFVisionLanguageBackbone) and not bb.model.training
    assert (tmp_path / "tiny-1" / "config.json").is_file()


def test_hub_ids_go_through_the_hub_cache(tiny_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    asked: list[str] = []

    def cached(repo_id: str) -> str:
        asked.append(repo_id)
        if repo_id != "someone/tiny-vlm":
            raise huggingface_hub.errors.LocalEntryNotFoundError("not in the cache and offline")
        return str(tiny_dir)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", cached)
    assert isinstance(load_backbone("someone/tiny-vlm"), HFVisionLanguageBackbone)
    with pytest.raises(InputError, match="cannot be fetched from the Hugging Face hub"):
        load_backbone("someone/else")
    assert asked == ["someone/tiny-vlm", "someone/else"]


def test_load_backbone_rejects_a_non_adapter_folder(tiny_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="adapter_config.json"):
        load_backbone(tiny_dir, adapter=tmp_path)


def test_resolve_dtype_and_device() -> None:
    assert resolve_dtype("bf16") == torch.bfloat16
    assert resolve_dtype("float32") == torch.float32
    assert resolve_dtype("auto", "cpu") == torch.float32
    with pytest.raises(InputError, match="unknown dtype"):
        resolve_dtype("int8")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in {"cpu", "cuda", "mps"}
    with pytest.raises(InputError, match="unknown device"):
        resolve_device("abacus")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA is not available"):
            resolve_device("cuda")
