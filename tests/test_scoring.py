"""The scoring engine on the offline tiny model: outputs, batching, bad inputs, manifests, resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from toolkit.levels import entropy
from toolkit.scoring import COLUMNS, PROB_COLUMNS, Scorer, read_results
from toolkit.scoring.processes import ProcessGroup

VALUES = np.array([5.0, 4.0, 3.0, 2.0, 1.0])


@pytest.fixture(scope="module")
def scorer() -> Scorer:
    from toolkit.models.loading import load_backbone

    return Scorer(load_backbone("tiny"), batch_size=4, progress=False)


def make_images(folder: Path, n: int, seed: int = 0) -> list[Path]:
    """Small images of varied sizes and content (flat blocks, noise, stripes)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        h, w = 24 + 9 * (i % 4), 40 - 5 * (i % 3)
        arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        arr[: h // (i % 3 + 1)] = rng.integers(0, 256, 3, dtype=np.uint8)  # flat part of varying size
        p = folder / f"img{i}.png"
        Image.fromarray(arr).save(p)
        paths.append(p)
    return paths


def write_clip(path: Path, n_frames: int, fps: int, seed: int) -> Path:
    import av

    rng = np.random.default_rng(seed)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 48, 32, "yuv420p"
        for _ in range(n_frames):
            arr = np.repeat(np.repeat(rng.integers(0, 256, (4, 6, 3), dtype=np.uint8), 8, 0), 8, 1)
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def probs_of(df: pd.DataFrame) -> np.ndarray:
    return df[list(PROB_COLUMNS)].to_numpy(dtype=float)


# --------------------------------------------------------------------------- outputs


def test_scores_probabilities_and_entropy(scorer: Scorer, tmp_path: Path) -> None:
    make_images(tmp_path / "imgs", 5)
    df = scorer.score([tmp_path / "imgs"])
    assert list(df.columns) == list(COLUMNS)
    assert df["path"].tolist() == [str(tmp_path / "imgs" / f"img{i}.png") for i in range(5)]
    assert (df["error"] == "").all()
    p = probs_of(df)
    assert np.allclose(p.sum(axis=1), 1.0, atol=1e-9)
    assert (p > 0).all()
    assert ((df["score"] >= 1) & (df["score"] <= 5)).all()
    assert np.allclose(df["score"], p @ VALUES, atol=1e-9)
    assert np.allclose(df["entropy"], entropy(p), atol=1e-9)
    assert df["score"].nunique() == 5  # the inputs really reach the model


def test_probabilities_are_softmax_of_level_logits(scorer: Scorer, tmp_path: Path) -> None:
    import torch

    img = Image.open(make_images(tmp_path, 1)[0]).convert("RGB")
    batch = scorer.backbone.scoring_batch([[img]], "aesthetics", "image")
    with torch.inference_mode():
        logits = scorer.backbone.level_logits(batch).double()
    expected = torch.softmax(logits, dim=-1).numpy()
    df = scorer.score([tmp_path / "img0.png"], task="aesthetics")
    assert np.allclose(probs_of(df), expected, atol=1e-9)
    quality = scorer.score([tmp_path / "img0.png"], task="quality")
    assert not np.allclose(probs_of(quality), expected, atol=1e-6)  # the task reaches the prompt


def test_batched_images_equal_one_at_a_time(scorer: Scorer, tmp_path: Path) -> None:
    make_images(tmp_path, 7, seed=3)
    batched = scorer.score([tmp_path], batch_size=4)
    single = scorer.score([tmp_path], batch_size=1)
    assert np.abs(probs_of(batched) - probs_of(single)).max() < 1e-5
    assert np.abs(batched["score"] - single["score"]).max() < 1e-5


def test_videos_of_different_lengths_batched_equal_one_at_a_time(scorer: Scorer, tmp_path: Path) -> None:
    clips = tmp_path / "clips"
    clips.mkdir()
    # 1, 4 and 2 sampled frames: the prompts differ in length by whole frames of visual tokens.
    write_clip(clips / "a.mp4", 10, 10, seed=1)
    write_clip(clips / "b.mp4", 40, 10, seed=2)
    write_clip(clips / "c.mp4", 25, 10, seed=3)
    frames = clips / "frames"
    frames.mkdir()
    for i in range(3):
        Image.fromarray(np.full((32, 48, 3), 60 * i, dtype=np.uint8)).save(frames / f"f{i}.png")
    batched = scorer.score([clips], video=True, batch_size=4)
    single = scorer.score([clips], video=True, batch_size=1)
    assert batched["path"].tolist() == [str(clips / "a.mp4"), str(clips / "b.mp4"), str(clips / "c.mp4"), str(frames)]
    assert (batched["error"] == "").all()
    assert np.abs(probs_of(batched) - probs_of(single)).max() < 1e-5
    # The video prompt and the frame count both matter: a 4-frame clip is not its first frame.
    first_frame_only = scorer.score([clips / "b.mp4"], video=True, max_frames=1)
    assert np.abs(probs_of(first_frame_only) - probs_of(single)[1]).max() > 1e-6
    assert "max_frames=1" in first_frame_only.attrs["notes"][str(clips / "b.mp4")]
    assert single.attrs["notes"] == {}


def test_decoding_workers_give_the_same_scores(scorer: Scorer, tmp_path: Path) -> None:
    make_images(tmp_path, 5, seed=11)
    (tmp_path / "zz_broken.png").write_bytes(b"broken")
    in_process = scorer.score([tmp_path], batch_size=2)
    workers = scorer.score([tmp_path], batch_size=2, num_workers=2)
    assert workers["path"].tolist() == in_process["path"].tolist()
    assert workers["error"].tolist() == in_process["error"].tolist()
    assert np.abs(probs_of(workers.iloc[:5]) - probs_of(in_process.iloc[:5])).max() < 1e-9


# --------------------------------------------------------------------------- bad inputs


def test_bad_inputs_get_error_rows_and_the_rest_is_scored(scorer: Scorer, tmp_path: Path) -> None:
    good = make_images(tmp_path / "imgs", 3)
    truncated = tmp_path / "imgs" / "img1b.jpg"
    Image.open(good[0]).save(tmp_path / "full.jpg")
    truncated.write_bytes((tmp_path / "full.jpg").read_bytes()[:200])
    (tmp_path / "imgs" / "img1c.png").write_bytes(b"garbage")
    df = scorer.score([tmp_path / "imgs", tmp_path / "nowhere.png"], batch_size=2)
    by_path = df.set_index("path")
    assert len(df) == 6
    for bad, reason in [
        (truncated, "cannot decode"),
        (tmp_path / "imgs" / "img1c.png", "not a readable image"),
        (tmp_path / "nowhere.png", "file not found"),
    ]:
        row = by_path.loc[str(bad)]
        assert reason in row["error"] and str(bad) in row["error"]
        assert np.isnan(row[["score", *PROB_COLUMNS, "entropy"]].to_numpy(dtype=float)).all()
    ok = df[df["error"] == ""]
    assert sorted(ok["path"]) == sorted(map(str, good))
    # The good rows are exactly what they are without the bad neighbours in their batches.
    alone = scorer.score(good, batch_size=1).set_index("path")
    assert np.abs(probs_of(ok.set_index("path").loc[alone.index]) - probs_of(alone)).max() < 1e-5


def test_video_passed_without_video_flag_is_an_error_row(scorer: Scorer, tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.mp4", 10, 10, seed=0)
    img = make_images(tmp_path, 1)[0]
    df = scorer.score([clip, img])
    assert "--video" in df.loc[0, "error"] and df.loc[1, "error"] == ""


def test_a_failure_on_one_input_spares_the_batch(
    scorer: Scorer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = make_images(tmp_path, 4)
    poison_size = Image.open(paths[2]).size

    def fragile(real):  # type: ignore[no-untyped-def]
        def build(visuals, task, kind):  # type: ignore[no-untyped-def]
            if any(v[0].size == poison_size for v in visuals):
                raise RuntimeError("simulated preprocessing failure")
            return real(visuals, task, kind)

        return build

    expected = scorer.score(paths, batch_size=1)
    # Both forms of a batch: the engine's (sent from the workers) and the retry's.
    for method in ("scoring_batch", "transfer_batch"):
        monkeypatch.setattr(scorer.backbone, method, fragile(getattr(scorer.backbone, method)))
    for workers in (0, 2):
        df = scorer.score(paths, batch_size=4, num_workers=workers)
        assert "simulated preprocessing failure" in df.loc[2, "error"] and np.isnan(df.loc[2, "score"])
        keep = [0, 1, 3]
        assert (df.loc[keep, "error"] == "").all()
        assert np.abs(probs_of(df.loc[keep]) - probs_of(expected.loc[keep])).max() < 1e-5


def test_a_broken_setup_raises_instead_of_filling_error_rows(
    scorer: Scorer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = make_images(tmp_path, 3)

    def broken(batch):  # type: ignore[no-untyped-def]
        raise RuntimeError("expected all tensors to be on the same device")

    monkeypatch.setattr(scorer.backbone, "level_logits", broken)
    with pytest.raises(RuntimeError, match="same device"):
        scorer.score(paths)


# --------------------------------------------------------------------------- manifests


def test_csv_manifest_with_img_path_and_string_gt_score(
    scorer: Scorer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    make_images(data / "images", 3)
    manifest = data / "test.csv"
    manifest.write_text('img_path,gt_score\nimages/img0.png,"77.38"\nimages/img1.png,12\nimages/img2.png,\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # relative paths resolve against the manifest, not the cwd
    df = scorer.score([manifest])
    assert list(df.columns) == [*COLUMNS, "gt_score"]
    assert df["path"].tolist() == [str(data / "images" / f"img{i}.png") for i in range(3)]
    assert (df["error"] == "").all()
    assert df["gt_score"].tolist()[:2] == [77.38, 12.0] and np.isnan(df["gt_score"][2])


def test_json_manifest_with_image_key_and_numeric_gt(scorer: Scorer, tmp_path: Path) -> None:
    make_images(tmp_path / "imgs", 2)
    manifest = tmp_path / "test.json"
    records = [
        {"image": "imgs/img1.png", "gt_score": 3.5},
        {"image": str(tmp_path / "imgs" / "img0.png"), "gt_score": "4"},
    ]
    manifest.write_text(json.dumps(records))
    df = scorer.score(manifest)
    assert df["path"].tolist() == [str(tmp_path / "imgs" / "img1.png"), str(tmp_path / "imgs" / "img0.png")]
    assert df["gt_score"].tolist() == [3.5, 4.0]


def test_manifest_problems_name_file_and_row(tmp_path: Path) -> None:
    from toolkit.errors import InputError
    from toolkit.scoring import read_manifest

    bad_gt = tmp_path / "bad.csv"
    bad_gt.write_text("image,gt_score\na.png,3\nb.png,good\n")
    with pytest.raises(InputError, match=r"bad\.csv: row 1: gt_score 'good' is not a number"):
        read_manifest(bad_gt)
    no_col = tmp_path / "nocol.csv"
    no_col.write_text("file,mos\na.png,3\n")
    with pytest.raises(InputError, match=r"nocol\.csv: no path column.*image, img_path, path.*file, mos"):
        read_manifest(no_col)


# --------------------------------------------------------------------------- resume and chunks


class CountingForwards:
    """Counts the inputs that reach the model (a spy around the backbone's real method)."""

    def __init__(self, backbone, monkeypatch: pytest.MonkeyPatch, fail_after: int | None = None) -> None:  # type: ignore[no-untyped-def]
        self.seen = 0
        real = type(backbone).level_logits.__get__(backbone)
        spy = self

        def counted(batch):  # type: ignore[no-untyped-def]
            if fail_after is not None and spy.seen >= fail_after:
                raise KeyboardInterrupt  # what Ctrl-C or a kill does to a run: nothing is caught
            logits = real(batch)
            spy.seen += logits.shape[0]
            return logits

        monkeypatch.setattr(backbone, "level_logits", counted)


def test_resume_skips_done_rows_and_retries_errors(
    scorer: Scorer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    imgs = tmp_path / "imgs"
    make_images(imgs, 3)
    late = imgs / "img9.png"
    late.write_bytes(b"not yet written")  # an error row in the first run
    out = tmp_path / "scores.csv"
    first = scorer.score([imgs], out=out)
    assert (first["error"] != "").sum() == 1
    lines_before = out.read_text().splitlines()

    make_images(imgs / "more", 2, seed=5)
    Image.open(imgs / "img0.png").save(late)  # now readable
    spy = CountingForwards(scorer.backbone, monkeypatch)
    second = scorer.score([imgs], out=out)
    assert spy.seen == 3  # two new images and the retried one, nothing else
    on_disk = read_results(out)
    assert on_disk["path"].tolist() == second["path"].tolist()  # one row per input, input order
    assert len(on_disk) == 6 and (on_disk["error"] == "").all()
    # Rows scored the first time are carried over exactly as written.
    for line in lines_before[1:]:
        if line.split(",")[-1] == "":
            assert line in out.read_text().splitlines()


def test_a_killed_run_keeps_finished_chunks_and_resumes(
    scorer: Scorer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_images(tmp_path / "imgs", 7)
    out = tmp_path / "scores.csv"
    CountingForwards(scorer.backbone, monkeypatch, fail_after=4)  # dies during the third batch of two
    with pytest.raises(KeyboardInterrupt):
        scorer.score([tmp_path / "imgs"], out=out, batch_size=2)
    partial = read_results(out)
    assert len(partial) == 4 and (partial["error"] == "").all()
    with open(out, "a") as fh:
        fh.write(str(tmp_path / "imgs" / "img5.png") + ",3.1,0.2")  # a torn line, as a kill mid-write leaves
    spy = CountingForwards(scorer.backbone, monkeypatch)
    df = scorer.score([tmp_path / "imgs"], out=out, batch_size=2)
    assert spy.seen == 3 and len(read_results(out)) == 7 and (df["error"] == "").all()
    reference = scorer.score([tmp_path / "imgs"], batch_size=7)
    assert np.abs(probs_of(df) - probs_of(reference)).max() < 1e-5


def test_sharded_processes_write_parts_and_main_merges(scorer: Scorer, tmp_path: Path) -> None:
    make_images(tmp_path / "imgs", 5)
    out = tmp_path / "scores.csv"
    # The processes of an `accelerate launch` run, played one after the other: rank 1 first
    # (its part stays behind), then the main process, which scores its block and merges.
    rows1 = scorer.score([tmp_path / "imgs"], out=out, processes=ProcessGroup(rank=1, world=2))
    assert rows1["path"].tolist() == [str(tmp_path / "imgs" / f"img{i}.png") for i in (3, 4)]
    assert (tmp_path / "scores.csv.part001-of-002").is_file() and not out.exists()
    merged = scorer.score([tmp_path / "imgs"], out=out, processes=ProcessGroup(rank=0, world=2))
    assert not list(tmp_path.glob("scores.csv.part*"))
    on_disk = read_results(out)
    assert (
        on_disk["path"].tolist()
        == merged["path"].tolist()
        == [str(tmp_path / "imgs" / f"img{i}.png") for i in range(5)]
    )
    alone = scorer.score([tmp_path / "imgs"])
    assert np.abs(probs_of(on_disk) - probs_of(alone)).max() < 1e-5


def test_one_scorer_serves_several_calls_independently(
    scorer: Scorer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Notes, resume and output file belong to one call: a scorer reused for another input (as a
    notebook or a server does) gives what a fresh scorer gives."""
    clip = write_clip(tmp_path / "clip.mp4", 40, 10, seed=4)
    images = make_images(tmp_path / "imgs", 3, seed=7)
    fresh = Scorer(scorer.backbone, batch_size=4, progress=False)
    expected_clip = fresh.score([clip], video=True, max_frames=1)
    expected_images = fresh.score(images)

    clip_out, images_out = tmp_path / "clip.csv", tmp_path / "images.csv"
    first = scorer.score([clip], video=True, max_frames=1, out=clip_out)
    second = scorer.score(images, out=images_out)
    assert first["path"].tolist() == [str(clip)] and "max_frames=1" in first.attrs["notes"][str(clip)]
    assert second["path"].tolist() == list(map(str, images)) and second.attrs["notes"] == {}
    assert np.abs(probs_of(first) - probs_of(expected_clip)).max() < 1e-9
    assert np.abs(probs_of(second) - probs_of(expected_images)).max() < 1e-9
    assert read_results(clip_out)["path"].tolist() == [str(clip)]  # each call wrote its own file
    assert read_results(images_out)["path"].tolist() == list(map(str, images))

    more = make_images(tmp_path / "more", 2, seed=8)
    spy = CountingForwards(scorer.backbone, monkeypatch)
    resumed = scorer.score([*images, *more], out=images_out)
    assert spy.seen == 2  # only the new images reach the model
    assert resumed["path"].tolist() == list(map(str, [*images, *more])) and resumed.attrs["notes"] == {}
    assert np.abs(probs_of(resumed.iloc[:3]) - probs_of(expected_images)).max() < 1e-9
    assert np.abs(probs_of(resumed.iloc[3:]) - probs_of(fresh.score(more))).max() < 1e-9
    assert read_results(clip_out)["path"].tolist() == [str(clip)]  # untouched by the later calls


# --------------------------------------------------------------------------- CLI


def test_cli_writes_the_exact_columns(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from toolkit.cli import app

    make_images(tmp_path / "imgs", 2)
    (tmp_path / "imgs" / "broken.png").write_bytes(b"broken")
    out = tmp_path / "scores.csv"
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "score",
            "--model",
            "tiny",
            "--task",
            "quality",
            "--dtype",
            "float32",
            "--device",
            "cpu",
            "--batch-size",
            "2",
            "--out",
            str(out),
            str(tmp_path / "imgs"),
        ],
    )
    assert result.exit_code == 0, result.output
    header = out.read_text().splitlines()[0]
    assert header == "path,score,p_excellent,p_good,p_fair,p_poor,p_bad,entropy,error"
    df = read_results(out)
    assert len(df) == 3 and (df["error"] != "").sum() == 1
    assert "2 of 3 input(s) scored" in result.output and "broken.png" in result.output

    manifest = tmp_path / "m.csv"
    manifest.write_text("image,gt_score\nimgs/img0.png,4.5\n")
    out2 = tmp_path / "aes.csv"
    result = runner.invoke(
        app,
        [
            "score",
            "--model",
            "tiny",
            "--task",
            "aesthetics",
            "--device",
            "cpu",
            "--no-progress",
            "--out",
            str(out2),
            str(manifest),
        ],
    )
    assert result.exit_code == 0, result.output
    assert (
        out2.read_text().splitlines()[0] == "path,score,p_excellent,p_good,p_fair,p_poor,p_bad,entropy,error,gt_score"
    )

    bad = runner.invoke(app, ["score", "--model", "tiny", "--task", "beauty", "--out", str(out2), str(manifest)])
    assert bad.exit_code != 0


def test_cli_applies_an_adapter(tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from typer.testing import CliRunner

    from toolkit.cli import app
    from toolkit.models.loading import load_backbone

    # A LoRA adapter with non-zero weights (the default init would leave the model unchanged).
    base = load_backbone("tiny").model
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=r".*language_model.*\.(q_proj|v_proj)", init_lora_weights=False)
    get_peft_model(base, lora).save_pretrained(tmp_path / "adapter")
    make_images(tmp_path / "imgs", 2)
    runner = CliRunner()
    common = ["score", "--model", "tiny", "--device", "cpu", "--no-progress"]
    plain = runner.invoke(app, [*common, "--out", str(tmp_path / "plain.csv"), str(tmp_path / "imgs")])
    adapted = runner.invoke(
        app,
        [*common, "--adapter", str(tmp_path / "adapter"), "--out", str(tmp_path / "lora.csv"), str(tmp_path / "imgs")],
    )
    assert plain.exit_code == 0 and adapted.exit_code == 0, adapted.output
    a, b = read_results(tmp_path / "plain.csv"), read_results(tmp_path / "lora.csv")
    assert (b["error"] == "").all() and np.abs(probs_of(a) - probs_of(b)).max() > 1e-4
