"""A model that is told when video frames were taken is told their real times.

The loader knows each frame's position in the clip and the clip's rate; a clip capped with
``max_frames`` keeps frames several seconds apart. Those times reach Qwen2.5-VL's temporal
position step, Qwen3-VL's "<t seconds>" and SmolVLM2's "Frame from MM:SS:" and video length,
in scoring (the CLI, decoding workers included) and in training alike; frames read at one a
second give the inputs they always gave.
"""

from __future__ import annotations

import json
import pickle
import re
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from test_media import write_clip
from typer.testing import CliRunner

from toolkit.errors import ToolkitError
from toolkit.media import FrameTimes, TimedFrames, VideoFrames, frame_times, load_video_frames
from toolkit.models.loading import load_backbone
from toolkit.qalign import answer_text, scoring_question
from toolkit.scoring import PROB_COLUMNS, Scorer, read_results
from toolkit.scoring.decode import decode_input
from toolkit.scoring.inputs import ScoreInput
from toolkit.training.data import load_training_data

CAPPED = FrameTimes((0.0, 3.0, 6.0, 9.0), 10.0)
"""The times of ``long.mp4`` (20 frames at 2 a second) capped to 4 frames: 1 fps frames 0, 3, 6, 9."""


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``long.mp4``: 10 s at 2 frames a second (10 frames at one a second); ``short.mp4``: 3 s."""
    root = tmp_path_factory.mktemp("timed-clips")
    write_clip(root / "long.mp4", 20, 2)
    write_clip(root / "short.mp4", 6, 2)
    return root


def _frames(n: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (56, 56, 3), dtype=np.uint8)) for _ in range(n)]


def _text(backbone: Any, batch: dict[str, Any], row: int = 0) -> str:
    return str(backbone.tokenizer.decode(batch["input_ids"][row]))


def _seconds(text: str) -> list[str]:
    return re.findall(r"<([\d.]+) seconds>", text)


def _stamps(text: str) -> list[str]:
    return re.findall(r"Frame from (\d\d:\d\d):", text)


def _assert_same_batch(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=0, rtol=0)


def _level_logits(backbone: Any, visuals: list[Any], kind: str = "video") -> torch.Tensor:
    with torch.no_grad():
        return backbone.level_logits(backbone.scoring_batch(visuals, "quality", kind))


# ------------------------------------------------------------------ the loader


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_a_capped_clip_keeps_its_frames_real_times(clips: Path, backend: str) -> None:
    capped = load_video_frames(clips / "long.mp4", max_frames=4, backend=backend)  # type: ignore[arg-type]
    assert capped.indices == [0, 6, 12, 18]
    assert capped.times == CAPPED
    timed = capped.timed()
    assert isinstance(timed, TimedFrames) and list(timed) == capped.frames and frame_times(timed) == CAPPED
    # Read whole, the clip's frames are one second apart: what frames without times are taken to be.
    whole = load_video_frames(clips / "long.mp4", backend=backend)  # type: ignore[arg-type]
    assert whole.times == FrameTimes.sampled(10) == FrameTimes(tuple(float(i) for i in range(10)), 10.0)


def test_times_are_positions_over_the_rate(tmp_path: Path) -> None:
    # 29.97 frames a second: the 1 fps frames 0, 29, 59 are taken at 0, 0.968 and 1.969 s.
    ntsc = load_video_frames(write_clip(tmp_path / "ntsc.mp4", 105, Fraction(30000, 1001)))
    assert ntsc.indices == [0, 29, 59]
    np.testing.assert_allclose(ntsc.times.seconds, [0, 29 * 1.001 / 30, 59 * 1.001 / 30], atol=1e-6)
    assert ntsc.times.duration == pytest.approx(105 * 1.001 / 30, abs=1e-6)
    # Shorter than a second: frame 0 of a 0.32 s clip.
    assert load_video_frames(write_clip(tmp_path / "short.mp4", 8, 25)).times == FrameTimes((0.0,), 0.32)


def test_frames_without_a_rate_are_a_second_apart(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, img in enumerate(_frames(5)):
        img.save(folder / f"f{i}.png")
    assert load_video_frames(folder).times == FrameTimes.sampled(5)
    assert load_video_frames(folder, max_frames=3).times == FrameTimes((0.0, 2.0, 4.0), 5.0)
    # A file stating no rate: every frame a candidate, one second apart.
    no_rate = VideoFrames(_frames(2), [0, 3], float("nan"), 4, "pyav")
    assert no_rate.times == FrameTimes((0.0, 3.0), 4.0)
    # Frame files listed in a manifest: the same.
    listed = ScoreInput("a;b;c;d;e", "video", tuple(str(f) for f in sorted(folder.iterdir())))
    decoded = decode_input(listed, max_frames=3)
    assert frame_times(decoded.frames or []) == FrameTimes((0.0, 2.0, 4.0), 5.0)


def test_timed_frames_travel_between_processes_and_check_their_length() -> None:
    timed = TimedFrames(_frames(4), CAPPED)
    again = pickle.loads(pickle.dumps(timed))  # decoding workers send them to the main process
    assert isinstance(again, TimedFrames) and again.times == CAPPED and len(again) == 4
    with pytest.raises(ToolkitError, match="3 frame times for 4 frames"):
        TimedFrames(_frames(4), FrameTimes((0.0, 1.0, 2.0), 3.0))
    assert frame_times(_frames(3)) == FrameTimes((0.0, 1.0, 2.0), 3.0)


# ------------------------------------------------------------------ the models


@pytest.mark.parametrize("name", ["qwen3_vl", "qwen3_5"])
def test_qwen3_reads_each_pairs_real_time(name: str, family_model: Callable[[str], Path]) -> None:
    native = load_backbone(family_model(name), native_video=True)
    frames = _frames(5, seed=1)
    real = TimedFrames(frames, FrameTimes((0.0, 3.0, 6.0, 9.0, 12.0), 13.0))
    batch = native.scoring_batch([real, frames], "quality", "video")
    assert _seconds(_text(native, batch, 0)) == ["1.5", "7.5", "12.0"]  # the last frame paired with itself
    assert _seconds(_text(native, batch, 1)) == ["0.5", "2.5", "4.0"]
    # Frames a second apart are the frames given without times, to the bit.
    _assert_same_batch(
        native.scoring_batch([TimedFrames(frames, FrameTimes.sampled(5))], "quality", "video"),
        native.scoring_batch([frames], "quality", "video"),
    )


def test_qwen2_5_vl_steps_by_the_mean_interval_of_its_pairs(family_model: Callable[[str], Path]) -> None:
    native = load_backbone(family_model("qwen2_5_vl"), native_video=True)
    frames = _frames(5, seed=2)
    real = TimedFrames(frames, FrameTimes((0.0, 3.0, 6.0, 9.0, 12.0), 13.0))
    uneven = TimedFrames(frames + frames[:1], FrameTimes((0.0, 1.0, 5.0, 6.0, 20.0, 20.5), 21.0))
    one_pair = TimedFrames(frames[:2], FrameTimes((0.0, 7.0), 8.0))
    batch = native.scoring_batch([real, frames, uneven, one_pair], "quality", "video")
    # Pairs start at 0, 6, 12 s; 1 fps: 0, 2, 4 s; uneven: 0, 5, 20 s; one pair: position 0 whatever the step.
    assert batch["second_per_grid_ts"].tolist() == [6.0, 2.0, 10.0, 2.0]
    assert batch["second_per_grid_ts"].dtype == torch.float32
    # The step reaches the model: the same frames at their real times are another input.
    assert (_level_logits(native, [real]) - _level_logits(native, [frames])).abs().max() > 1e-6
    _assert_same_batch(
        native.scoring_batch([TimedFrames(frames, FrameTimes.sampled(5))], "quality", "video"),
        native.scoring_batch([frames], "quality", "video"),
    )


def test_smolvlm_reads_each_frames_real_time_and_the_videos_length(family_model: Callable[[str], Path]) -> None:
    from transformers.video_utils import VideoMetadata

    native: Any = load_backbone(family_model("smolvlm"), native_video=True)
    frames = _frames(4, seed=3)
    long = TimedFrames(frames, FrameTimes.at_rate([0, 6, 12, 18], 21, 2.0))  # 10.5 s at 2 frames a second
    text = _text(native, native.scoring_batch([long], "quality", "video"))
    assert "series of four frames from a 0:00:10 [H:MM:SS] video." in text
    assert _stamps(text) == ["00:00", "00:03", "00:06", "00:09"]
    # The processor's own text for those frames of that video.
    metadata = VideoMetadata(total_num_frames=21, fps=2.0, duration=10.5, frames_indices=[0, 6, 12, 18])
    expansion = native.processor.replace_video_token(
        {"pixel_values": torch.zeros(1, 4, 3, 32, 32), "video_metadata": [metadata]}, 0
    )
    prompt = native.scoring_prompt("quality", "video", 4)
    assert text == prompt.replace(native.video_placeholder, expansion)
    minutes = _text(
        native, native.scoring_batch([TimedFrames(frames[:2], FrameTimes((0.0, 75.5), 130.2))], "quality", "video")
    )
    assert _stamps(minutes) == ["00:00", "01:15"] and "from a 0:02:10 [H:MM:SS] video" in minutes
    _assert_same_batch(
        native.scoring_batch([TimedFrames(frames, FrameTimes.sampled(4))], "quality", "video"),
        native.scoring_batch([frames], "quality", "video"),
    )


@pytest.mark.parametrize("name", ["internvl", "llava_onevision", "qwen2_vl"])
def test_families_that_take_no_times_are_left_as_they_were(name: str, family_model: Callable[[str], Path]) -> None:
    native = load_backbone(family_model(name), native_video=True)
    frames = _frames(4, seed=4)
    _assert_same_batch(
        native.scoring_batch([TimedFrames(frames, CAPPED)], "quality", "video"),
        native.scoring_batch([frames], "quality", "video"),
    )


# ------------------------------------------------------------------ qalign score and training


@pytest.mark.parametrize(("name", "workers"), [("qwen2_5_vl", 1), ("qwen3_vl", 0), ("smolvlm", 0)])
def test_qalign_score_max_frames_gives_the_model_real_times(
    name: str, workers: int, family_model: Callable[[str], Path], clips: Path, tmp_path: Path
) -> None:
    from toolkit.cli import app

    out = tmp_path / "scores.csv"
    args = ["score", "--device", "cpu", "--no-progress", "--video", "--max-frames", "4", "--batch-size", "2"]
    args += ["--num-workers", str(workers), "--model", str(family_model(name)), "--out", str(out), str(clips)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    scores = read_results(out).set_index("path")
    got = scores.loc[[str(clips / "long.mp4"), str(clips / "short.mp4")], list(PROB_COLUMNS)].to_numpy()

    scorer = Scorer(load_backbone(family_model(name), native_video=True), progress=False)
    long = load_video_frames(clips / "long.mp4", max_frames=4).frames
    short = load_video_frames(clips / "short.mp4", max_frames=4).frames  # 3 frames, one a second: not capped
    real = scorer.level_probs([TimedFrames(long, CAPPED)], kind="video")[0]
    np.testing.assert_allclose(got[0], real, atol=1e-6)
    # Told one frame a second (the old assumption), the model gives other scores.
    assert np.abs(scorer.level_probs([long], kind="video")[0] - real).max() > 1e-6
    np.testing.assert_allclose(got[1], scorer.level_probs([short], kind="video")[0], atol=1e-6)


@pytest.mark.parametrize("name", ["qwen2_5_vl", "qwen3_vl", "smolvlm"])
def test_training_batches_carry_the_times_scoring_gives(
    name: str, family_model: Callable[[str], Path], clips: Path, tmp_path: Path
) -> None:
    records = [
        {
            "id": "long",
            "image": "long.mp4",
            "conversations": [
                {"from": "human", "value": scoring_question("quality", "video") + "\n<|image|>"},
                {"from": "gpt", "value": answer_text("good", "quality", "video")},
            ],
        }
    ]
    (tmp_path / "records.json").write_text(json.dumps(records))
    example = load_training_data(tmp_path / "records.json", images=clips, max_frames=4)[0]
    scored = decode_input(ScoreInput(str(clips / "long.mp4"), "video"), max_frames=4).frames
    assert scored is not None and frame_times(example.frames) == frame_times(scored) == CAPPED

    native = load_backbone(family_model(name), native_video=True)
    assert example.kind == "video"
    train = native.training_batch([example])
    score = native.scoring_batch([scored], "quality", "video")
    if name == "qwen2_5_vl":
        assert train["second_per_grid_ts"].tolist() == score["second_per_grid_ts"].tolist() == [6.0]
    elif name == "qwen3_vl":
        assert _seconds(_text(native, train)) == _seconds(_text(native, score)) == ["1.5", "7.5"]
    else:
        assert _stamps(_text(native, train)) == _stamps(_text(native, score)) == ["00:00", "00:03", "00:06", "00:09"]
    with torch.no_grad():
        logits = native.model(**{k: v for k, v in train.items() if k != "labels"}).logits
    level, found = native.answer_level_logits(train, logits)
    assert found.all()
    torch.testing.assert_close(level, _level_logits(native, [scored]), atol=1e-5, rtol=0)
