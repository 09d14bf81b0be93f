"""The scoring engine end to end on the OneAlign parity fixture: files in, reference numbers out."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from toolkit.scoring import PROB_COLUMNS, Scorer

from conftest import ONEALIGN_TINY as FIXTURE

TOL = 1e-4  # the fixture's suggested tolerance (float32, CPU)


@pytest.fixture(scope="module")
def expected() -> dict:
    return json.loads((FIXTURE / "expected.json").read_text())


@pytest.fixture(scope="module")
def scorer() -> Scorer:
    pytest.importorskip("toolkit.models.onealign")
    from toolkit.models.loading import load_backbone

    return Scorer(load_backbone(FIXTURE, dtype="float32", device="cpu"), batch_size=4, progress=False)


@pytest.mark.parametrize("task", ["quality", "aesthetics"])
def test_image_files_score_like_the_reference(scorer: Scorer, expected: dict, task: str) -> None:
    images = list(expected["images"].values())
    df = scorer.score([FIXTURE / im["file"] for im in images], task=task)  # batches of 4 and 2
    assert (df["error"] == "").all()
    probs = df[list(PROB_COLUMNS)].to_numpy(dtype=float)
    assert np.abs(probs - np.array([im[task]["probs"] for im in images])).max() < TOL
    assert np.abs(df["score"].to_numpy() - np.array([im[task]["score_1_to_5"] for im in images])).max() < TOL


def test_frame_folder_video_scores_like_the_reference(scorer: Scorer, expected: dict, tmp_path: Path) -> None:
    video = expected["video"]
    folder = tmp_path / "clip"
    folder.mkdir()
    for i, name in enumerate(video["frames"]):
        shutil.copy(FIXTURE / name, folder / f"frame{i}.png")
    df = scorer.score([folder], video=True)
    assert df["error"].tolist() == [""]
    assert np.abs(df[list(PROB_COLUMNS)].to_numpy(dtype=float)[0] - np.array(video["quality"]["probs"])).max() < TOL
    assert abs(df["score"].iloc[0] - video["quality"]["score_1_to_5"]) < TOL


def test_videos_of_different_lengths_batched_equal_single(scorer: Scorer, expected: dict, tmp_path: Path) -> None:
    frames = [FIXTURE / name for name in expected["video"]["frames"]]
    clips = []
    for name, picks in [("one", [0]), ("four", [0, 1, 2, 3]), ("two", [3, 1])]:
        folder = tmp_path / name
        folder.mkdir()
        for k, i in enumerate(picks):
            shutil.copy(frames[i], folder / f"f{k}.png")
        clips.append(folder)
    batched = scorer.score(clips, video=True, batch_size=3)
    single = scorer.score(clips, video=True, batch_size=1)
    a = batched[list(PROB_COLUMNS)].to_numpy(dtype=float)
    b = single[list(PROB_COLUMNS)].to_numpy(dtype=float)
    assert np.abs(a - b).max() < 1e-5
    assert np.abs(a[1] - np.array(expected["video"]["quality"]["probs"])).max() < TOL


def test_uint8_transfer_batches_give_the_same_pixels_and_logits(scorer: Scorer, expected: dict) -> None:
    """Workers send uint8 pixels that are normalised on the device: bit-identical to the float path."""
    import torch
    from PIL import Image

    backbone = scorer.backbone
    frames = [Image.open(FIXTURE / im["file"]).convert("RGB") for im in list(expected["images"].values())[:3]]
    floats = backbone.processor.preprocess(frames)
    raw = backbone.processor.preprocess(frames, normalize=False)
    assert raw.dtype == torch.uint8 and raw.shape == floats.shape
    assert torch.equal(backbone.processor.normalize(raw), floats)
    visuals = [[f] for f in frames]
    with torch.inference_mode():
        via_floats = backbone.level_logits(backbone.scoring_batch(visuals, "quality", "image"))
        via_uint8 = backbone.level_logits(backbone.transfer_batch(visuals, "quality", "image"))
        stacked = backbone.transfer_batch(visuals, "quality", "image")
        stacked["images"] = torch.stack(stacked["images"])  # the (B, F, 3, H, W) layout too
        via_stacked = backbone.level_logits(stacked)
    assert torch.equal(via_floats, via_uint8) and torch.equal(via_floats, via_stacked)


def test_normalize_pixels_rejects_floats(scorer: Scorer) -> None:
    import torch

    from toolkit.errors import InputError

    with pytest.raises(InputError, match="uint8"):
        scorer.backbone.processor.normalize(torch.zeros(1, 3, 4, 4))
