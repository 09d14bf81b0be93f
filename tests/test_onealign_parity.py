"""The native OneAlign port reproduces the reference implementation on the tiny fixture (float32, CPU)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from toolkit.levels import LEVEL_VALUES, LEVEL_WEIGHTS_UNIT
from toolkit.models.base import TrainingExample
from toolkit.models.onealign import OneAlignBackbone, load_onealign_backbone

from conftest import ONEALIGN_TINY as FIXTURE

EXPECTED = json.loads((FIXTURE / "expected.json").read_text())
TRAINING = json.loads((FIXTURE / "expected_training.json").read_text())
RECORDS = {r["id"]: r for r in json.loads((FIXTURE / "training_records.json").read_text())}
ATOL = 1e-4


@pytest.fixture(scope="module")
def backbone() -> OneAlignBackbone:
    bb = load_onealign_backbone(FIXTURE, dtype="float32", device="cpu")
    bb.model.set_attn_implementation("eager")  # the fixture was computed with eager attention
    return bb


@pytest.fixture(scope="module")
def tensors() -> dict[str, torch.Tensor]:
    return load_file(FIXTURE / "expected_tensors.safetensors")


def _open(rel: str) -> Image.Image:
    with Image.open(FIXTURE / rel) as img:
        return img.convert("RGB")


IMAGE_NAMES = list(EXPECTED["images"])
IMAGES = [_open(EXPECTED["images"][n]["file"]) for n in IMAGE_NAMES]
FRAMES = [_open(f) for f in EXPECTED["video"]["frames"]]


def _check_scores(logits: torch.Tensor, ref: dict) -> None:
    np.testing.assert_allclose(logits.numpy(), ref["level_logits"], atol=ATOL, rtol=0)
    probs = torch.softmax(logits.double(), -1).numpy()
    np.testing.assert_allclose(probs, ref["probs"], atol=ATOL, rtol=0)
    assert probs @ np.array(LEVEL_VALUES, dtype=float) == pytest.approx(ref["score_1_to_5"], abs=ATOL)
    assert probs @ np.array(LEVEL_WEIGHTS_UNIT) == pytest.approx(ref["score_0_to_1"], abs=ATOL)


# --------------------------------------------------------------------------- scoring


def test_level_token_ids(backbone: OneAlignBackbone) -> None:
    assert backbone.level_token_ids == EXPECTED["level_token_ids"]


@pytest.mark.parametrize("task", ["quality", "aesthetics"])
def test_image_scores_match_reference(backbone: OneAlignBackbone, task: str) -> None:
    logits = backbone.level_logits(backbone.scoring_batch([[im] for im in IMAGES], task, "image"))  # type: ignore[arg-type]
    assert logits.shape == (len(IMAGES), 5) and logits.dtype == torch.float32
    for row, name in zip(logits, IMAGE_NAMES):
        _check_scores(row, EXPECTED["images"][name][task])


def test_video_score_matches_reference(backbone: OneAlignBackbone) -> None:
    logits = backbone.level_logits(backbone.scoring_batch([FRAMES], "quality", "video"))
    _check_scores(logits[0], EXPECTED["video"]["quality"])


def test_full_logits_of_image0(backbone: OneAlignBackbone) -> None:
    batch = backbone.scoring_batch([[IMAGES[0]]], "quality", "image")
    with torch.no_grad():
        out = backbone.model(input_ids=batch["input_ids"], images=batch["images"], use_cache=False)
    assert out.logits.shape[1] == EXPECTED["sequence_layout_image_prompt"]["total_length"]
    last = out.logits[0, -1]
    ref = EXPECTED["full_logits_image0_quality"]
    np.testing.assert_allclose(last.numpy(), ref["values"], atol=ATOL, rtol=0)
    assert int(last.argmax()) == ref["argmax"]
    assert float(last.norm()) == pytest.approx(ref["l2_norm"], abs=1e-3)


def test_intermediates(backbone: OneAlignBackbone, tensors: dict[str, torch.Tensor]) -> None:
    model = backbone.model
    ids = torch.tensor([EXPECTED["prompts"]["quality/image"]["input_ids"]])
    pixels = tensors["pixel_values.img0"][None]
    with torch.no_grad():
        vision = model.model.vision_model(pixels)
        torch.testing.assert_close(vision[0], tensors["vision_last_hidden_state.img0"], atol=1e-5, rtol=0)
        tokens = model.model.visual_abstractor(vision)
        torch.testing.assert_close(tokens[0], tensors["abstractor_output.img0"], atol=ATOL, rtol=0)
        merged = model.prepare_multimodal_inputs(ids, pixels)
        torch.testing.assert_close(merged["inputs_embeds"][0], tensors["inputs_embeds.img0_quality"], atol=ATOL, rtol=0)
        assert merged["modality_indicators"][0].tolist() == tensors["modality_indicators.img0_quality"].long().tolist()
        out = model(input_ids=ids, images=pixels, output_hidden_states=True, use_cache=False)
    assert len(out.hidden_states) == 3
    for i, hidden in enumerate(out.hidden_states):
        torch.testing.assert_close(hidden[0], tensors[f"decoder_hidden_states.{i}.img0_quality"], atol=ATOL, rtol=0)
    torch.testing.assert_close(out.hidden_states[-1][0], tensors["final_hidden_state.img0_quality"], atol=ATOL, rtol=0)
    torch.testing.assert_close(out.logits[0, -1], tensors["last_logits.img0_quality"], atol=ATOL, rtol=0)
    layout = EXPECTED["sequence_layout_image_prompt"]
    visual = merged["modality_indicators"][0].nonzero().flatten().tolist()
    assert visual == list(range(layout["image_span_start"], layout["image_span_start"] + layout["image_span_length"]))


def test_sdpa_matches_eager(backbone: OneAlignBackbone) -> None:
    batch = backbone.scoring_batch([[IMAGES[1]], FRAMES], "quality", "video")
    eager = backbone.level_logits(batch)
    backbone.model.set_attn_implementation("sdpa")
    try:
        sdpa = backbone.level_logits(batch)
    finally:
        backbone.model.set_attn_implementation("eager")
    torch.testing.assert_close(sdpa, eager, atol=1e-5, rtol=0)


def test_batched_scoring_equals_one_at_a_time(backbone: OneAlignBackbone) -> None:
    # Videos of different lengths and a still image in one batch: left padding after the
    # visual tokens are inserted must not change any row.
    visuals = [FRAMES, [IMAGES[2]], FRAMES[:2], FRAMES[1:], [IMAGES[4]]]
    for kind in ("video", "image"):
        batched = backbone.level_logits(backbone.scoring_batch(visuals, "quality", kind))  # type: ignore[arg-type]
        single = torch.cat([backbone.level_logits(backbone.scoring_batch([v], "quality", kind)) for v in visuals])  # type: ignore[arg-type]
        torch.testing.assert_close(batched, single, atol=1e-5, rtol=0)
    # and sdpa on the padded batch as well
    backbone.model.set_attn_implementation("sdpa")
    try:
        padded = backbone.level_logits(backbone.scoring_batch(visuals, "quality", "video"))
        alone = backbone.level_logits(backbone.scoring_batch([visuals[1]], "quality", "video"))
    finally:
        backbone.model.set_attn_implementation("eager")
    torch.testing.assert_close(padded[1], alone[0], atol=1e-5, rtol=0)


def test_logits_to_keep(backbone: OneAlignBackbone) -> None:
    batch = backbone.scoring_batch([[IMAGES[0]]], "aesthetics", "image")
    with torch.no_grad():
        full = backbone.model(input_ids=batch["input_ids"], images=batch["images"], use_cache=False).logits
        last = backbone.model(
            input_ids=batch["input_ids"], images=batch["images"], use_cache=False, logits_to_keep=1
        ).logits
    assert last.shape == (1, 1, EXPECTED["vocab_size"])
    torch.testing.assert_close(last[0, 0], full[0, -1])


def test_greedy_generation_uses_the_cache_correctly(backbone: OneAlignBackbone) -> None:
    batch = backbone.scoring_batch([[IMAGES[0]], [IMAGES[0]]], "quality", "image")
    images = torch.stack(batch["images"])
    generated = backbone.model.generate(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        images=images,
        max_new_tokens=4,
        do_sample=False,
    )
    ids = batch["input_ids"][:1]
    with torch.no_grad():
        for _ in range(4):  # the same greedy decoding without a cache
            logits = backbone.model(input_ids=ids, images=images[:1], use_cache=False).logits[:, -1]
            ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], dim=1)
    assert generated[0].tolist() == ids[0].tolist() == generated[1].tolist()


# --------------------------------------------------------------------------- training


def _example(rid: str) -> TrainingExample:
    rec = RECORDS[rid]
    files = rec["image"] if isinstance(rec["image"], list) else [rec["image"]]
    human, gpt = rec["conversations"]
    return TrainingExample(
        frames=[_open(f) for f in files], question=human["value"], answer=gpt["value"], meta={"id": rid}
    )


@pytest.mark.parametrize("rid", TRAINING["records_order"])
def test_training_loss_per_record(backbone: OneAlignBackbone, rid: str) -> None:
    ref = TRAINING["records"][rid]
    batch = backbone.training_batch([_example(rid)])
    assert batch["input_ids"][0].tolist() == ref["input_ids"]
    assert batch["labels"][0].tolist() == ref["labels"]
    assert list(batch["images"].shape) == [1, *ref["pixel_values_shape"]]
    with torch.no_grad():
        out = backbone.model(**batch, use_cache=False)
    assert out.loss.item() == pytest.approx(ref["loss"], abs=ATOL)

    labels = backbone.expanded_labels(batch)[0]
    assert labels.shape[0] == out.logits.shape[1] == ref["expanded_length"]
    ce = torch.nn.functional.cross_entropy(out.logits[0, :-1], labels[1:], reduction="none", ignore_index=-100)
    np.testing.assert_allclose(ce[labels[1:] != -100].numpy(), ref["per_token_ce"], atol=ATOL, rtol=0)

    tf = ref["teacher_forced_level"]
    level = out.logits[0, tf["logit_position_in_expanded_sequence"], backbone.level_token_ids]
    np.testing.assert_allclose(level.numpy(), tf["level_logits"], atol=ATOL, rtol=0)
    np.testing.assert_allclose(torch.softmax(level, -1).numpy(), tf["probs"], atol=ATOL, rtol=0)
    gathered, found = backbone.answer_level_logits(batch, out.logits)
    assert found.tolist() == [True]
    torch.testing.assert_close(gathered[0], level)


@pytest.mark.parametrize("batch_key", ["batch_ab", "batch_ac"])
def test_training_batch_loss(backbone: OneAlignBackbone, batch_key: str) -> None:
    ref = TRAINING[batch_key]
    batch = backbone.training_batch([_example(r) for r in ref["records"]])
    assert batch["input_ids"].tolist() == ref["input_ids"]
    assert batch["labels"].tolist() == ref["labels"]
    assert batch["attention_mask"].long().tolist() == ref["attention_mask"]
    if isinstance(batch["images"], torch.Tensor):
        assert list(batch["images"].shape) == ref["images_shape"]
    else:  # different frame counts: a list, as the reference collator does
        assert [list(x.shape) for x in batch["images"]] == ref["images_shape"]
        assert backbone.expanded_labels(batch).shape[1] == max(ref["expanded_lengths"])
    with torch.no_grad():
        loss = backbone.model(**batch, use_cache=False).loss
    assert loss.item() == pytest.approx(ref["loss"], abs=ATOL)


def test_gradient_norm_of_record_a(backbone: OneAlignBackbone) -> None:
    ref = TRAINING["grad_norm_record_a"]
    model = backbone.model
    batch = backbone.training_batch([_example(ref["record"])])
    model.train()
    try:
        model.zero_grad(set_to_none=True)
        model(**batch, use_cache=False).loss.backward()
        params = dict(model.named_parameters())
        assert len(params) == ref["num_parameter_tensors"]
        assert [n for n, p in params.items() if p.grad is None] == ref["tensors_without_grad"]
        zero = [n for n, p in params.items() if p.grad is not None and not bool(p.grad.any())]
        assert zero == ref["tensors_with_all_zero_grad"]

        def norm(names: list[str]) -> float:
            return math.sqrt(sum(float(params[n].grad.double().pow(2).sum()) for n in names))

        groups = {
            "vision_model": [n for n in params if n.startswith("model.vision_model.")],
            "visual_abstractor": [n for n in params if n.startswith("model.visual_abstractor.")],
            "llm_embed_tokens": ["model.embed_tokens.weight"],
            "llm_layers_and_norm": [n for n in params if n.startswith(("model.layers.", "model.norm."))],
            "lm_head": ["lm_head.weight"],
        }
        assert sum(len(v) for v in groups.values()) == len(params)
        assert norm(list(params)) == pytest.approx(ref["l2_all_parameters"], rel=1e-4)
        for group, names in groups.items():
            assert norm(names) == pytest.approx(ref["l2_by_group"][group], rel=1e-4), group
    finally:
        model.zero_grad(set_to_none=True)
        model.eval()
