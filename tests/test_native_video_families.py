"""SmolVLM2, InternVL and LLaVA-OneVision given videos as videos, on tiny random builds.

Each family's native layout is checked against its transformers processor where the processor
can build it without torchvision (the text that replaces a video placeholder) and against the
video processor's maths otherwise (the frames' pixels); then scoring generated clips, batching,
frame order, the difference from the frame path, and a LoRA fine-tune on videos scored again.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from test_scoring import write_clip

from toolkit.levels import level_word
from toolkit.models.base import TrainingExample
from toolkit.models.family_video import FamilyVideoBackbone, resized_frames
from toolkit.models.loading import load_backbone, native_video_available
from toolkit.qalign import answer_text, scoring_question
from toolkit.scoring import PROB_COLUMNS, Scorer

FAMILIES = ["smolvlm", "internvl", "llava_onevision"]


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two generated H.264 clips at 4 frames a second: 3 s and 2 s (3 and 2 frames at one a second)."""
    root = tmp_path_factory.mktemp("family-clips")
    write_clip(root / "a.mp4", 12, 4, seed=1)
    write_clip(root / "b.mp4", 8, 4, seed=2)
    return root


def _frames(n: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (24 + 9 * i, 40 - 5 * i, 3), dtype=np.uint8)) for i in range(n)]


def _logits(backbone: Any, visuals: list[list[Image.Image]], kind: str = "video") -> torch.Tensor:
    with torch.no_grad():
        return backbone.level_logits(backbone.scoring_batch(visuals, "quality", kind))


def _processor_expansion(backbone: Any, n: int) -> str:
    """What transformers' processor writes in place of one video of ``n`` frames (one a second)."""
    from transformers.video_utils import VideoMetadata

    p, frames = backbone.processor, torch.zeros(n, 3, 32, 32)
    if backbone.model.config.model_type == "smolvlm":
        metadata = VideoMetadata(total_num_frames=n, fps=1.0, duration=float(n), frames_indices=list(range(n)))
        return str(p.replace_video_token({"pixel_values": frames[None], "video_metadata": [metadata]}, 0))
    return str(p.replace_video_token({"pixel_values_videos": [frames]}, 0))


# ------------------------------------------------------------------ the layout


@pytest.mark.parametrize("name", FAMILIES)
def test_the_native_prompt_is_the_processors_video_layout(name: str, family_model: Callable[[str], Path]) -> None:
    assert native_video_available(family_model(name))
    native = load_backbone(family_model(name), native_video=True)
    assert isinstance(native, FamilyVideoBackbone)
    prompt = native.scoring_prompt("quality", "video", 3)
    assert prompt.count(native.video_placeholder) == 1 and prompt.endswith("The quality of the video is")
    batch = native.scoring_batch([_frames(3, seed=1)], "quality", "video")
    text = native.tokenizer.decode(batch["input_ids"][0])
    expansion = _processor_expansion(native, 3)
    assert text == prompt.replace(native.video_placeholder, expansion)
    # The token sequence: the prompt's tokens with the processor's expansion tokenised in place.
    ids = native.tokenizer(prompt.replace(native.video_placeholder, expansion), add_special_tokens=False)
    assert batch["input_ids"][0].tolist() == ids["input_ids"]
    if name == "smolvlm":
        assert "You are provided the following series of three frames from a 0:00:03 [H:MM:SS] video.\n" in text
        assert re.findall(r"Frame from (\d\d:\d\d):", text) == ["00:00", "00:01", "00:02"]
        assert text.count("<global-img>") == 3 and text.count("<image>") == 3 * native.processor.image_seq_len
    elif name == "internvl":
        assert re.findall(r"Frame(\d+): <img>", text) == ["1", "2", "3"]
        assert text.count("<IMG_CONTEXT>") == 3 * native.processor.image_seq_length
    else:  # 4 x 4 patches pooled to 2 x 2 per frame, then the newline
        assert text.count("<video>") == 3 * 4 + 1 and "<image>" not in text
    # The frame path writes no video layout.
    frames = load_backbone(family_model(name))
    framed = frames.tokenizer.decode(frames.scoring_batch([_frames(3, seed=1)], "quality", "video")["input_ids"][0])
    assert "Frame" not in framed and native.video_placeholder not in framed


@pytest.mark.parametrize("name", FAMILIES)
def test_native_video_pixels_follow_the_video_processor(name: str, family_model: Callable[[str], Path]) -> None:
    native = load_backbone(family_model(name), native_video=True)
    assert isinstance(native, FamilyVideoBackbone)
    frames = _frames(3, seed=2)
    batch = native.scoring_batch([frames], "quality", "video")
    ip = native.processor.image_processor
    if name == "smolvlm":
        # Longest edge to the video size (even short edge), then square at the image size; 0.5 mean and std.
        edge = ip.max_image_size["longest_edge"]
        expected = []
        for f in frames:
            w, h = f.size
            short = int(edge / (w / h)) if w >= h else int(edge * (w / h))
            short += short % 2
            size = (edge, short) if w >= h else (short, edge)
            square = f.resize(size, Image.Resampling.LANCZOS).resize((edge, edge), Image.Resampling.LANCZOS)
            expected.append((np.asarray(square, dtype=np.float32) / 255 - 0.5) / 0.5)
        got = batch["pixel_values"][0].numpy().transpose(0, 2, 3, 1)
        np.testing.assert_allclose(got, np.stack(expected), atol=1e-5)
        assert batch["pixel_attention_mask"].shape == (1, 3, edge, edge) and batch["pixel_attention_mask"].all()
        return
    # InternVL, LLaVA-OneVision: each frame resized to the video size as its image processor resizes
    # a whole image (InternVL's tile without cropping, LLaVA-OneVision's base patch).
    if name == "internvl":
        reference = ip(images=frames, crop_to_patches=False, return_tensors="np")["pixel_values"]
        got = batch["pixel_values"].numpy()
    else:
        reference = np.stack([ip(images=[f], return_tensors="np")["pixel_values"][0][0] for f in frames])
        got = batch["pixel_values_videos"][0].numpy()
        assert "pixel_values" not in batch
    np.testing.assert_allclose(got, reference, atol=1e-5)
    np.testing.assert_allclose(
        got, resized_frames(frames, got.shape[-2:], ip.resample, ip.image_mean, ip.image_std), atol=0
    )


def test_a_checkpoints_video_processor_settings_are_used(family_model: Callable[[str], Path], tmp_path: Path) -> None:
    folder = tmp_path / "internvl"
    shutil.copytree(family_model("internvl"), folder)
    (folder / "video_preprocessor_config.json").write_text(
        json.dumps({"size": {"height": 32, "width": 32}, "image_mean": [0.0, 0.0, 0.0], "image_std": [1.0, 1.0, 1.0]})
    )
    frames = _frames(2, seed=3)
    got = load_backbone(folder, native_video=True).scoring_batch([frames], "quality", "video")["pixel_values"]
    expected = np.stack([np.asarray(f.resize((32, 32), Image.Resampling.BICUBIC), np.float32) / 255 for f in frames])
    np.testing.assert_allclose(got.numpy(), expected.transpose(0, 3, 1, 2), atol=1e-6)


# ------------------------------------------------------------------ scoring


@pytest.mark.parametrize("name", FAMILIES)
def test_native_videos_score_batch_and_keep_their_order(name: str, family_model: Callable[[str], Path]) -> None:
    native = load_backbone(family_model(name), native_video=True)
    imgs = _frames(4, seed=4)
    visuals = [imgs[:3], [imgs[3]], imgs]  # 3, 1 and 4 frames in one batch
    together = _logits(native, visuals)
    alone = torch.cat([_logits(native, [v]) for v in visuals])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=0)
    same_length = [imgs[:2], imgs[2:]]  # one length: the model's own batch layout
    torch.testing.assert_close(
        _logits(native, same_length), torch.cat([_logits(native, [v]) for v in same_length]), atol=1e-5, rtol=0
    )
    assert (_logits(native, [imgs[:3][::-1]]) - alone[0]).abs().max() > 1e-6  # frames are read in order
    frames = load_backbone(family_model(name))
    assert (_logits(frames, visuals) - together).abs().max() > 1e-4  # another input than the frame path
    # Still images are unaffected by the switch.
    torch.testing.assert_close(_logits(native, [[imgs[0]]], "image"), _logits(frames, [[imgs[0]]], "image"))


@pytest.mark.parametrize("name", [*FAMILIES, "qwen2_5_vl", "qwen3_vl"])
def test_native_batches_build_without_the_model(name: str, family_model: Callable[[str], Path]) -> None:
    from toolkit.scoring.decode import detach_preprocessing

    # Scoring workers build batches with a copy of the backbone that has no model.
    native = load_backbone(family_model(name), native_video=True)
    worker = detach_preprocessing(native)
    assert worker is not None and worker.model is None
    visuals = [_frames(3, seed=6), _frames(2, seed=7)]
    built, expected = (
        worker.scoring_batch(visuals, "quality", "video"),
        native.scoring_batch(visuals, "quality", "video"),
    )
    assert built.keys() == expected.keys()
    for key, value in expected.items():
        torch.testing.assert_close(built[key], value, atol=0, rtol=0)


@pytest.mark.parametrize("name", FAMILIES)
def test_generated_clips_score_natively(name: str, family_model: Callable[[str], Path], clips: Path) -> None:
    native = Scorer.from_pretrained(str(family_model(name)), batch_size=2, progress=False)
    assert native.video_input == "native"
    df = native.score([clips], video=True)
    probs = df[list(PROB_COLUMNS)].to_numpy()
    assert len(df) == 2 and (df["error"].fillna("") == "").all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    framed = Scorer.from_pretrained(str(family_model(name)), video_as_frames=True, batch_size=2, progress=False)
    assert framed.video_input == "frames"
    assert np.abs(framed.score([clips], video=True)[list(PROB_COLUMNS)].to_numpy() - probs).max() > 1e-5


# ------------------------------------------------------------------ training


@pytest.mark.parametrize("name", FAMILIES)
def test_native_training_batch_matches_scoring(name: str, family_model: Callable[[str], Path]) -> None:
    native = load_backbone(family_model(name), native_video=True)
    imgs = _frames(4, seed=5)
    examples = [
        TrainingExample(
            imgs[:3], scoring_question("quality", "video"), answer_text("good", "quality", "video"), "video"
        ),
        TrainingExample([imgs[3]], scoring_question("quality", "image"), answer_text("bad", "quality", "image")),
        TrainingExample(
            imgs[:2], scoring_question("quality", "video"), answer_text("fair", "quality", "video"), "video"
        ),
    ]
    batch = native.training_batch(examples)
    supervised = [str(native.tokenizer.decode(row[row != -100])) for row in batch["labels"]]
    assert [s.strip().startswith(ex.answer) for s, ex in zip(supervised, examples)] == [True] * 3
    with torch.no_grad():
        logits = native.model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    level, found = native.answer_level_logits(batch, logits)
    assert found.all()
    scoring = torch.cat(
        [_logits(native, [imgs[:3]]), _logits(native, [[imgs[3]]], "image"), _logits(native, [imgs[:2]])]
    )
    torch.testing.assert_close(level, scoring, atol=1e-5, rtol=0)


def _video_records(clips: Path, out: Path) -> Path:
    records = [
        {
            "id": clip.stem,
            "image": str(clip),
            "conversations": [
                {"from": "human", "value": scoring_question("quality", "video") + "\n<|image|>"},
                {"from": "gpt", "value": answer_text(level_word(5 - 3 * i), "quality", "video")},
            ],
        }
        for i, clip in enumerate(sorted(clips.glob("*.mp4")))
    ]
    path = out / "records.json"
    path.write_text(json.dumps(records))
    return path


@pytest.mark.parametrize("name", FAMILIES)
def test_lora_on_videos_natively_then_scoring(
    name: str, family_model: Callable[[str], Path], clips: Path, tmp_path: Path
) -> None:
    from toolkit.training import TrainConfig, train
    from toolkit.training.output import read_record

    out = tmp_path / "adapter"
    result = train(
        TrainConfig(
            recipe="hf-lora",
            model=str(family_model(name)),
            data=str(_video_records(clips, tmp_path)),
            out=str(out),
            max_steps=2,
            batch_size=2,
            lr=5e-3,
            lora_r=4,
            lora_alpha=8,
            dtype="float32",
            device="cpu",
            cpu_threads=1,
        )
    )
    assert getattr(result.backbone, "native_video", False) and len(result.losses) == 2
    assert all(np.isfinite(result.losses)) and read_record(out)["video_input"] == "native"
    tuned = Scorer.from_pretrained(str(family_model(name)), adapter=str(out), progress=False)
    assert tuned.video_input == "native"
    probs = tuned.score([clips], video=True)[list(PROB_COLUMNS)].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    base = Scorer.from_pretrained(str(family_model(name)), progress=False).score([clips], video=True)
    assert np.abs(base[list(PROB_COLUMNS)].to_numpy() - probs).max() > 1e-4  # it learned


@pytest.mark.parametrize("name", FAMILIES)
def test_qalign_score_records_how_videos_were_given(
    name: str, family_model: Callable[[str], Path], clips: Path, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from toolkit.cli import app
    from toolkit.scoring.provenance import read_record as read_score_record

    for extra, mode, summary in (
        ([], "native", "videos read natively"),
        (["--video-as-frames"], "frames", "as frames"),
    ):
        out = tmp_path / f"{mode}.csv"
        args = ["score", "--device", "cpu", "--no-progress", "--video", "--model", str(family_model(name))]
        result = CliRunner().invoke(app, [*args, *extra, "--out", str(out), str(clips)])
        assert result.exit_code == 0, result.output
        assert summary in " ".join(result.output.split())
        assert read_score_record(out)["video_input"] == mode  # type: ignore[index]
