"""Videos go to a model natively where its family reads them so, as frames otherwise or on request.

``qalign score --video`` gives a Qwen-VL model each video as a video; ``--video-as-frames`` keeps
the frame path. The choice is recorded beside the output (a resumed run must make the same) and in
the training record (``video_as_frames`` setting), so a model is scored as it was trained.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from test_scoring import make_images
from typer.testing import CliRunner

from toolkit.errors import InputError
from toolkit.levels import level_word
from toolkit.models.loading import load_backbone, native_video_available
from toolkit.models.tiny_families import build_tiny_family
from toolkit.qalign import answer_text, scoring_question
from toolkit.scoring import PROB_COLUMNS, Scorer, read_results
from toolkit.scoring.provenance import read_record


@pytest.fixture(scope="module")
def qwen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_family("qwen2_vl", tmp_path_factory.mktemp("qwen2_vl"), seed=0)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two videos given as folders of frames (4 and 3 frames, 56 x 56 pixels)."""
    root = tmp_path_factory.mktemp("clips")
    for i, n in enumerate((4, 3)):
        for j, path in enumerate(make_images(root / f"clip{i}", n, seed=10 + i)):
            from PIL import Image

            Image.open(path).convert("RGB").resize((56, 56)).save(root / f"clip{i}" / f"frame{j}.png")
            path.unlink()
    return root


def _score(args: Sequence[str]) -> tuple[int, str, BaseException | None]:
    from toolkit.cli import app

    result = CliRunner().invoke(app, ["score", "--device", "cpu", "--no-progress", "--video", *args])
    return result.exit_code, " ".join(result.output.split()), result.exception


def _direct(model: Path | str, clips: Path, native: bool) -> np.ndarray:
    """The level probabilities of the clips scored in Python with the mode set by hand."""
    scorer = Scorer(load_backbone(model, native_video=native), progress=False)
    return scorer.score([clips], video=True)[list(PROB_COLUMNS)].to_numpy()


def test_a_qwen_vl_model_reads_videos_natively_by_default(qwen: Path, clips: Path, tmp_path: Path) -> None:
    out = tmp_path / "scores.csv"
    code, text, _ = _score(["--model", str(qwen), "--out", str(out), str(clips)])
    assert code == 0, text
    assert "2 of 2 input(s) scored" in text and "videos read natively" in text
    assert read_record(out)["video_input"] == "native"  # type: ignore[index]
    probs = read_results(out)[list(PROB_COLUMNS)].to_numpy()
    np.testing.assert_allclose(probs, _direct(qwen, clips, native=True), atol=1e-6)
    # The two modes are different inputs to the model: the scores are not the frame path's.
    assert np.abs(probs - _direct(qwen, clips, native=False)).max() > 1e-4


def test_video_as_frames_takes_the_frame_path(qwen: Path, clips: Path, tmp_path: Path) -> None:
    out = tmp_path / "scores.csv"
    code, text, _ = _score(["--model", str(qwen), "--video-as-frames", "--out", str(out), str(clips)])
    assert code == 0, text
    assert "videos as frames" in text
    assert read_record(out)["video_input"] == "frames"  # type: ignore[index]
    probs = read_results(out)[list(PROB_COLUMNS)].to_numpy()
    np.testing.assert_allclose(probs, _direct(qwen, clips, native=False), atol=1e-6)


@pytest.mark.parametrize("first, then", [([], ["--video-as-frames"]), (["--video-as-frames"], [])])
def test_resuming_with_the_other_choice_is_refused_in_one_line(
    qwen: Path, clips: Path, tmp_path: Path, first: list[str], then: list[str]
) -> None:
    out = tmp_path / "scores.csv"
    common = ["--model", str(qwen), "--out", str(out), str(clips)]
    assert _score([*first, *common])[0] == 0
    code, _, exc = _score([*then, *common])
    assert code != 0 and isinstance(exc, InputError)
    was, now = ("native", "frames") if not first else ("frames", "native")
    assert f"video_input (was {was}, now {now})" in str(exc)
    assert "\n" not in str(exc)
    assert _score([*first, *common])[0] == 0  # the same choice resumes


def test_models_without_native_video_read_frames(clips: Path, tmp_path: Path) -> None:
    assert not native_video_available("tiny")
    out = tmp_path / "scores.csv"
    code, text, _ = _score(["--model", "tiny", "--out", str(out), str(clips)])
    assert code == 0, text
    assert "videos as frames" in text
    assert read_record(out)["video_input"] == "frames"  # type: ignore[index]
    # Frames were the only way: asking for them resumes the same file.
    assert _score(["--model", "tiny", "--video-as-frames", "--out", str(out), str(clips)])[0] == 0


def test_an_older_record_of_a_video_run_means_frames(clips: Path, tmp_path: Path) -> None:
    out = tmp_path / "scores.csv"
    assert _score(["--model", "tiny", "--out", str(out), str(clips)])[0] == 0
    record_file = out.with_name(out.name + ".qalign.json")
    record = json.loads(record_file.read_text())
    del record["video_input"]  # as written before the choice was recorded
    record_file.write_text(json.dumps(record))
    assert _score(["--model", "tiny", "--out", str(out), str(clips)])[0] == 0


def _video_conversations(clips: Path) -> Path:
    records = []
    for i, clip in enumerate(sorted(p for p in clips.iterdir() if p.is_dir())):
        level = level_word(5 - 2 * i)
        records.append(
            {
                "id": clip.name,
                "image": [str(f) for f in sorted(clip.iterdir())],  # a list of frames: a video
                "conversations": [
                    {"from": "human", "value": scoring_question("quality", "video") + "\n<|image|>"},
                    {"from": "gpt", "value": answer_text(level, "quality", "video")},
                ],
            }
        )
    path = clips.parent / f"{clips.name}.json"
    path.write_text(json.dumps(records))
    return path


@pytest.mark.parametrize("as_frames, mode", [(False, "native"), (True, "frames")])
def test_training_records_how_videos_were_given(
    qwen: Path, clips: Path, tmp_path: Path, as_frames: bool, mode: str
) -> None:
    from toolkit.training import TrainConfig, train
    from toolkit.training.output import read_record as read_training_record

    config = TrainConfig(
        model=str(qwen),
        data=str(_video_conversations(clips)),
        out=str(tmp_path / "run"),
        mode="full",
        max_steps=1,
        batch_size=2,
        video_as_frames=as_frames,
        device="cpu",
    )
    result = train(config)
    assert getattr(result.backbone, "native_video", False) is (mode == "native")
    record = read_training_record(tmp_path / "run")
    assert record["video_input"] == mode and record["config"]["video_as_frames"] is as_frames
    card = (tmp_path / "run" / "README.md").read_text()
    assert ("--video-as-frames" in card) is as_frames
