"""OneAlign inputs against the reference fixture: prompts, token ids, pixels, training examples."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from toolkit.errors import InputError
from toolkit.models.onealign.conversation import collate, encode_conversation, human_turn
from toolkit.models.onealign.processing import (
    ImageSettings,
    OneAlignProcessor,
    scoring_prompt,
    tokenize_with_images,
)

from conftest import ONEALIGN_TINY as FIXTURE

EXPECTED = json.loads((FIXTURE / "expected.json").read_text())
TRAINING = json.loads((FIXTURE / "expected_training.json").read_text())
RECORDS = {r["id"]: r for r in json.loads((FIXTURE / "training_records.json").read_text())}


@pytest.fixture(scope="module")
def processor() -> OneAlignProcessor:
    return OneAlignProcessor.from_pretrained(FIXTURE)


def _open(rel: str) -> Image.Image:
    with Image.open(FIXTURE / rel) as img:
        return img.convert("RGB")


@pytest.mark.parametrize("key", sorted(EXPECTED["prompts"]))
def test_scoring_prompt_text_and_ids(processor: OneAlignProcessor, key: str) -> None:
    task, kind = key.split("/")
    ref = EXPECTED["prompts"][key]
    assert scoring_prompt(task, kind) == ref["text"]
    ids = processor.scoring_ids(task, kind)
    assert ids == ref["input_ids"]
    pieces = processor.tokenizer.convert_ids_to_tokens([i for i in ids if i >= 0])
    assert pieces == [p for p in ref["pieces"] if p != "<image>"]


def test_level_token_ids(processor: OneAlignProcessor) -> None:
    assert processor.level_token_ids() == EXPECTED["level_token_ids"]
    assert processor.tokenizer.convert_ids_to_tokens(EXPECTED["level_token_ids"]) == EXPECTED["level_token_pieces"]


def test_fast_tokenizer_json_gives_the_same_ids(processor: OneAlignProcessor) -> None:
    from transformers import LlamaTokenizer

    fast = LlamaTokenizer(tokenizer_file=str(FIXTURE / "extras" / "tokenizer.json"))
    for ref in EXPECTED["prompts"].values():
        assert tokenize_with_images(fast, ref["text"]) == ref["input_ids"]


def test_placeholder_split_rules(processor: OneAlignProcessor) -> None:
    tok = processor.tokenizer
    # Only the first part keeps its BOS; one -200 per placeholder.
    ids = tokenize_with_images(tok, "a<|image|>b<|image|>c")
    assert ids.count(tok.bos_token_id) == 1 and ids[0] == tok.bos_token_id
    assert ids.count(-200) == 2
    # A prompt that starts with the placeholder keeps the next part's BOS (reference quirk).
    ids = tokenize_with_images(tok, "<|image|>\nHow")
    assert ids[:2] == [-200, tok.bos_token_id]


def test_scoring_prompt_rejects_unknown_task() -> None:
    with pytest.raises(InputError, match="unknown task"):
        scoring_prompt("sharpness", "image")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", sorted(EXPECTED["images"]))
def test_pixel_values_match_reference_stats(processor: OneAlignProcessor, name: str) -> None:
    ref = EXPECTED["images"][name]
    img = _open(ref["file"])
    assert img.size == (ref["width"], ref["height"])
    px = processor.preprocess([img])
    assert px.dtype == torch.float32 and px.shape == (1, *ref["pixel_values_stats"]["shape"])
    stats = ref["pixel_values_stats"]
    flat = px[0].double()
    assert flat.sum().item() == pytest.approx(stats["sum"], abs=1e-2)
    assert flat.mean().item() == pytest.approx(stats["mean"], abs=1e-6)
    assert (flat**2).sum().item() == pytest.approx(stats["sumsq"], rel=1e-6)
    np.testing.assert_allclose(px[0].flatten()[:8].numpy(), stats["first8"], atol=1e-6)


def test_pixel_tensors_match_reference(processor: OneAlignProcessor) -> None:
    tensors = load_file(FIXTURE / "expected_tensors.safetensors")
    got = processor.preprocess([_open("images/img0_gradient_64x64.png"), _open("images/img1_noise_160x120.png")])
    torch.testing.assert_close(got[0], tensors["pixel_values.img0"], atol=1e-5, rtol=0)
    torch.testing.assert_close(got[1], tensors["pixel_values.img1"], atol=1e-5, rtol=0)
    frame = processor.preprocess([_open(EXPECTED["video"]["frames"][0])])[0]
    torch.testing.assert_close(frame, tensors["video_pixel_values.frame0"], atol=1e-5, rtol=0)


def test_padding_uses_mean_colour(processor: OneAlignProcessor) -> None:
    assert processor.image_settings.pad_color == tuple(EXPECTED["pad_color_rgb"])
    # A 1-pixel-high white strip: almost every pixel of the square is padding.
    px = processor.preprocess([Image.new("RGB", (200, 2), (255, 255, 255))])[0]
    mean = torch.tensor(processor.image_settings.image_mean)
    std = torch.tensor(processor.image_settings.image_std)
    corner = px[:, 0, 0]
    expected = (torch.tensor(EXPECTED["pad_color_rgb"]) / 255 - mean) / std
    torch.testing.assert_close(corner, expected.float(), atol=1e-6, rtol=0)


def test_image_settings_read_plain_int_and_dict_sizes(tmp_path: Path) -> None:
    as_int = ImageSettings.from_dict({"size": 336, "crop_size": 336})
    as_dict = ImageSettings.from_dict({"size": {"shortest_edge": 336}, "crop_size": {"height": 336, "width": 336}})
    assert as_int == as_dict and as_int.shortest_edge == 336 and as_int.crop_height == 336
    with pytest.raises(InputError, match="crop_size"):
        ImageSettings.from_dict({"size": 224, "crop_size": "big"})
    (tmp_path / "preprocessor_config.json").write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        OneAlignProcessor.from_pretrained(tmp_path)


# --------------------------------------------------------------------------- training examples


@pytest.mark.parametrize("rid", TRAINING["records_order"])
def test_training_prompt_ids_and_labels(processor: OneAlignProcessor, rid: str) -> None:
    ref = TRAINING["records"][rid]
    human, gpt = RECORDS[rid]["conversations"]
    assert human_turn(human["value"]) == ref["human_after_preprocess_multimodal"]
    enc = encode_conversation(processor.tokenizer, human["value"], gpt["value"])
    assert enc.prompt == ref["prompt"]
    assert enc.input_ids == ref["input_ids"]
    assert enc.labels == ref["labels"]
    supervised = [i for i in enc.labels if i != -100]
    assert processor.tokenizer.convert_ids_to_tokens(supervised) == ref["supervised_pieces"]
    assert enc.input_ids.index(-200) == ref["image_placeholder_index"]


def test_question_without_tag_gets_one(processor: OneAlignProcessor) -> None:
    with_tag = encode_conversation(
        processor.tokenizer, "Rate the quality of this image.\n<|image|>", "The quality of the image is good."
    )
    without = encode_conversation(
        processor.tokenizer, "Rate the quality of this image.", "The quality of the image is good."
    )
    assert with_tag.input_ids == without.input_ids and with_tag.input_ids.count(-200) == 1


@pytest.mark.parametrize("batch_key", ["batch_ab", "batch_ac"])
def test_collation_matches_reference(processor: OneAlignProcessor, batch_key: str) -> None:
    ref = TRAINING[batch_key]
    encoded = []
    for rid in ref["records"]:
        human, gpt = RECORDS[rid]["conversations"]
        encoded.append(encode_conversation(processor.tokenizer, human["value"], gpt["value"]))
    batch = collate(encoded, processor.tokenizer.unk_token_id, processor.tokenizer.model_max_length)
    assert batch["input_ids"].tolist() == ref["input_ids"]
    assert batch["labels"].tolist() == ref["labels"]
    assert batch["attention_mask"].long().tolist() == ref["attention_mask"]
    assert TRAINING["pad_token_id"] == processor.tokenizer.unk_token_id == 0
