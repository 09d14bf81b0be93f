"""Score files record how they were made: a resumed run must match, truncated videos are counted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_media import cut_clip, write_faststart_clip
from test_scoring import make_images
from typer.testing import CliRunner

from toolkit.errors import InputError
from toolkit.scoring import COLUMNS, Scorer, read_results
from toolkit.scoring.processes import ProcessGroup
from toolkit.scoring.provenance import ModelIdentity, folder_fingerprint, record_path
from toolkit.scoring.results import frames_path


@pytest.fixture(scope="module")
def scorer() -> Scorer:
    from toolkit.models.loading import load_backbone

    return Scorer(load_backbone("tiny"), batch_size=4, progress=False)


def test_the_record_sits_beside_the_file_and_the_columns_stay(scorer: Scorer, tmp_path: Path) -> None:
    make_images(tmp_path / "imgs", 2)
    out = tmp_path / "scores.csv"
    scorer.score([tmp_path / "imgs"], task="aesthetics", out=out)
    assert out.read_text().splitlines()[0] == ",".join(COLUMNS)
    record = json.loads(record_path(out).read_text())
    assert record_path(out).name == "scores.csv.qalign.json"
    assert record["task"] == "aesthetics" and record["input_kind"] == "image" and record["dtype"] == "float32"
    assert record["question"] == "How would you rate the aesthetics of this image?"
    assert record["model"] and record["model_fingerprint"] and record["adapter"] is None
    assert record["toolkit_version"]
    scorer.score([tmp_path / "imgs"], task="aesthetics", out=out)  # the same settings resume


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"task": "aesthetics"}, "task"),
        ({"video": True}, "input_kind"),
        ({"identity": ModelIdentity("my-finetune", "0123")}, "model"),
        ({"identity": ModelIdentity("tiny", "", "/adapters/lora", "abcd")}, "adapter"),
    ],
)
def test_a_file_made_otherwise_is_refused_naming_what_differs(
    scorer: Scorer, tmp_path: Path, change: dict, field: str
) -> None:
    make_images(tmp_path / "imgs", 2)
    out = tmp_path / "scores.csv"
    scorer.score([tmp_path / "imgs"], out=out)
    before = out.read_text()
    other = Scorer(scorer.backbone, progress=False, identity=change.pop("identity", scorer.identity))
    with pytest.raises(InputError) as info:
        other.score([tmp_path / "imgs"], out=out, **change)
    message = str(info.value)
    assert "\n" not in message and f"{field} (was " in message
    assert "another --out" in message and f"delete {out}" in message
    assert out.read_text() == before  # nothing appended to the refused file


def test_a_recorded_dtype_or_prompt_that_differs_is_refused(scorer: Scorer, tmp_path: Path) -> None:
    make_images(tmp_path / "imgs", 1)
    out = tmp_path / "scores.csv"
    scorer.score([tmp_path / "imgs"], out=out)
    record = json.loads(record_path(out).read_text())
    record.update(dtype="bfloat16", question="Rate it.")
    record_path(out).write_text(json.dumps(record))
    with pytest.raises(InputError, match=r"dtype \(was bfloat16, now float32\); question \(was Rate it\."):
        scorer.score([tmp_path / "imgs"], out=out)


def test_a_score_file_without_a_record_is_refused_and_deleting_it_starts_over(scorer: Scorer, tmp_path: Path) -> None:
    make_images(tmp_path / "imgs", 2)
    out = tmp_path / "scores.csv"
    scorer.score([tmp_path / "imgs"], out=out)
    record_path(out).unlink()  # as an older toolkit left it
    with pytest.raises(InputError, match=r"no record of the model, adapter and task .* older toolkit"):
        scorer.score([tmp_path / "imgs"], out=out)
    out.unlink()  # a record left without its file describes nothing and is replaced
    scorer.score([tmp_path / "imgs"], task="aesthetics", out=out)
    assert json.loads(record_path(out).read_text())["task"] == "aesthetics"


def test_parts_of_a_killed_run_without_a_record_are_refused(scorer: Scorer, tmp_path: Path) -> None:
    make_images(tmp_path / "imgs", 4)
    out = tmp_path / "scores.csv"
    scorer.score([tmp_path / "imgs"], out=out, processes=ProcessGroup(rank=1, world=2))
    assert not out.exists() and record_path(out).exists()  # every process records a new file
    record_path(out).unlink()
    with pytest.raises(InputError, match="no record"):
        scorer.score([tmp_path / "imgs"], out=out, processes=ProcessGroup(rank=0, world=2))


def test_fingerprints_follow_the_weights(scorer: Scorer, tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text('{"model_type": "x"}')
    (ckpt / "model.safetensors").write_bytes(b"\0" * 4000)
    first = folder_fingerprint(ckpt)
    (ckpt / "model.safetensors").write_bytes(b"\1" * 4000)  # fine-tuned: same config, other weights
    assert folder_fingerprint(ckpt) != first
    identity = ModelIdentity.of_files("tiny", ckpt)
    assert identity.model == "tiny" and identity.model_fingerprint
    assert identity.adapter == str(ckpt.resolve()) and identity.adapter_fingerprint == folder_fingerprint(ckpt)
    # The loaded backbone's folder gives the same fingerprint without resolving the name again.
    assert ModelIdentity.of_files("tiny", None, scorer.backbone).model_fingerprint == identity.model_fingerprint


# --------------------------------------------------------------------------- truncated videos


def test_a_truncated_video_is_scored_and_counted_beside_the_file(scorer: Scorer, tmp_path: Path) -> None:
    clip = write_faststart_clip(tmp_path / "full.mp4", 100, 10)
    cut = cut_clip(clip, 0.1, tmp_path / "cut.mp4")
    out = tmp_path / "scores.csv"
    df = scorer.score([clip, cut], video=True, out=out)
    assert (df["error"] == "").all() and df["score"].notna().all()
    decoded = df.attrs["frames"][str(cut)][0]
    assert df.attrs["frames"] == {str(clip): (10, 10), str(cut): (decoded, 10)} and decoded < 10
    assert read_results(out).columns.tolist() == list(COLUMNS)
    side = frames_path(out).read_text().splitlines()
    assert side[0] == "path,frames_decoded,frames_sampled" and f"{cut},{decoded},10" in side
    # A resumed run keeps reporting the counts of the rows it did not score again.
    again = scorer.score([clip, cut], video=True, out=out)
    assert again.attrs["frames"] == df.attrs["frames"]


# --------------------------------------------------------------------------- CLI


def test_cli_exits_1_when_nothing_was_scored(tmp_path: Path) -> None:
    from toolkit.cli import app

    out = tmp_path / "scores.csv"
    result = CliRunner().invoke(
        app, ["score", "--model", "tiny", "--device", "cpu", "--no-progress", "--out", str(out), "nope.jpg"]
    )
    assert result.exit_code == 1
    assert "none of the 1 input(s) could be scored" in result.output
    assert read_results(out)["error"].str.contains("nope.jpg").all()


def test_cli_refuses_to_resume_with_another_task(tmp_path: Path) -> None:
    from toolkit.cli import app

    make_images(tmp_path / "imgs", 2)
    out = tmp_path / "scores.csv"
    common = ["score", "--model", "tiny", "--device", "cpu", "--no-progress", "--out", str(out)]
    assert CliRunner().invoke(app, [*common, str(tmp_path / "imgs")]).exit_code == 0
    result = CliRunner().invoke(app, [*common, "--task", "aesthetics", str(tmp_path / "imgs")])
    assert result.exit_code != 0 and isinstance(result.exception, InputError)
    assert "task (was quality, now aesthetics)" in str(result.exception)


def test_cli_summary_counts_truncated_videos(tmp_path: Path) -> None:
    from toolkit.cli import app

    clip = write_faststart_clip(tmp_path / "full.mp4", 100, 10)
    cut = cut_clip(clip, 0.1, tmp_path / "cut.mp4")
    out = tmp_path / "scores.csv"
    result = CliRunner().invoke(
        app,
        ["score", "--model", "tiny", "--device", "cpu", "--no-progress", "--video", "--out", str(out), str(cut)],
    )
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())  # the console wraps long lines
    assert "1 of 1 input(s) scored" in text
    assert "1 video(s) decoded fewer frames than their 1 fps sampling asked for" in text
    assert "cut.mp4: 1 of 10 frames" in text


def test_a_mismatch_known_without_the_weights_is_refused_before_loading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import toolkit.models.loading
    from toolkit.scoring import score_images

    make_images(tmp_path / "imgs", 2)
    out = tmp_path / "scores.csv"
    score_images([tmp_path / "imgs"], model="tiny", out=out, progress=False)

    def no_loading(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded before the output was checked")

    monkeypatch.setattr(toolkit.models.loading, "load_backbone", no_loading)
    with pytest.raises(InputError, match=r"task \(was quality, now aesthetics\)"):
        score_images([tmp_path / "imgs"], model="tiny", task="aesthetics", out=out, progress=False)
    with pytest.raises(InputError, match=r"input_kind \(was image, now video\)"):
        score_images([tmp_path / "imgs"], model="tiny", video=True, out=out, progress=False)
    # What only the weights tell (fingerprints, dtype) is still checked after loading.
    with pytest.raises(AssertionError, match="loaded before"):
        score_images([tmp_path / "imgs"], model="tiny", out=out, progress=False)
