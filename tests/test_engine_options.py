"""Speed switches of a backbone (attention kernels, torch.compile of the image path) leave the scores as they are."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from PIL import Image

from toolkit.errors import InputError
from toolkit.models.onealign import OneAlignBackbone, load_onealign_backbone
from toolkit.scoring import PROB_COLUMNS, Scorer
from toolkit.scoring.compile import (
    apply_speed_options,
    image_path_modules,
    resolve_compile_mode,
    uncompile,
)

from conftest import ONEALIGN_TINY as FIXTURE

ATOL = 1e-5
# "aot_eager" traces the graph as inductor does (Dynamo, AOTAutograd) without generating kernels, which
# takes minutes on a small CPU; the inductor path itself runs in the GPU test below.
TRACE_ONLY = "aot_eager"


@pytest.fixture
def backbone() -> Iterator[OneAlignBackbone]:
    bb = load_onealign_backbone(FIXTURE, dtype="float32", device="cpu")
    yield bb
    uncompile(bb)
    torch._dynamo.reset()


def _visuals(n: int, seed: int = 0) -> list[list[Image.Image]]:
    rng = np.random.default_rng(seed)
    shapes = [(300, 400), (400, 300), (224, 224)]
    return [[Image.fromarray(rng.integers(0, 256, (*shapes[i % 3], 3), dtype=np.uint8))] for i in range(n)]


def _logits(bb: OneAlignBackbone, visuals: list[list[Image.Image]], kind: str = "image") -> torch.Tensor:
    with torch.inference_mode():
        return bb.level_logits(bb.transfer_batch(visuals, "quality", kind))  # type: ignore[arg-type]


def test_sdpa_is_the_default_and_eager_gives_the_same_scores(backbone: OneAlignBackbone) -> None:
    images, video = _visuals(3), [im[0] for im in _visuals(4, seed=1)]
    sdpa = apply_speed_options(backbone, "sdpa")
    assert sdpa.attention == "sdpa" and sdpa.compile_mode == "off" and not sdpa.compiled
    fast = _logits(backbone, images), _logits(backbone, [video, video[:2]], "video")
    assert apply_speed_options(backbone, "eager").attention == "eager"
    plain = _logits(backbone, images), _logits(backbone, [video, video[:2]], "video")
    for a, b in zip(fast, plain):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=0)


def test_compiled_image_path_scores_like_the_eager_one(backbone: OneAlignBackbone) -> None:
    images = _visuals(4)
    before = _logits(backbone, images)
    report = apply_speed_options(backbone, "sdpa", "default", backend=TRACE_ONLY, warmup=4)
    assert report.compiled == ["vision_model", "visual_abstractor"] and not report.notes
    assert report.warmup_s is not None
    torch.testing.assert_close(_logits(backbone, images), before, atol=ATOL, rtol=0)
    # A batch of another size (the last one of a run) and a video go through the same modules.
    torch.testing.assert_close(_logits(backbone, images[:3]), before[:3], atol=ATOL, rtol=0)
    assert report.compiled == ["vision_model", "visual_abstractor"]


def test_the_engine_with_compile_writes_the_same_rows(backbone: OneAlignBackbone, tmp_path) -> None:
    paths = []
    for i, (im,) in enumerate(_visuals(5)):
        paths.append(tmp_path / f"im{i}.png")
        im.save(paths[-1])
    plain = Scorer(backbone, batch_size=2, progress=False).score(paths)
    apply_speed_options(backbone, "sdpa", "default", backend=TRACE_ONLY)
    fast = Scorer(backbone, batch_size=2, progress=False).score(paths)
    assert list(fast["path"]) == list(plain["path"]) and (fast["error"] == "").all()
    cols = list(PROB_COLUMNS) + ["score"]
    np.testing.assert_allclose(fast[cols].to_numpy(float), plain[cols].to_numpy(float), atol=ATOL, rtol=0)


def test_a_compiler_failure_falls_back_to_eager(backbone: OneAlignBackbone) -> None:
    def broken_backend(graph, example_inputs):  # stands for a missing toolchain or an unlowerable operator
        raise RuntimeError("no kernels today")

    images = _visuals(2)
    before = _logits(backbone, images)
    report = apply_speed_options(backbone, None, "default", backend=broken_backend)  # type: ignore[arg-type]
    assert report.compiled == ["vision_model", "visual_abstractor"]
    torch.testing.assert_close(_logits(backbone, images), before, atol=ATOL, rtol=0)
    assert report.compiled == [] and len(report.notes) == 2
    assert all("running eagerly" in note and "no kernels today" in note for note in report.notes)


def test_no_cpp_compiler_means_no_compile(backbone: OneAlignBackbone, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    report = apply_speed_options(backbone, "sdpa", "auto")
    assert report.compile_mode == "off" and not report.compiled
    assert report.notes == ["compile skipped: torch.compile on a CPU needs a C++ compiler (g++ or clang++), none found"]
    assert all(m._compiled_call_impl is None for m in image_path_modules(backbone).values())


def test_bad_choices_are_one_line_errors(backbone: OneAlignBackbone) -> None:
    with pytest.raises(InputError, match="unknown compile mode 'fastest'"):
        apply_speed_options(backbone, None, "fastest")
    with pytest.raises(InputError, match="unknown attention 'flash'"):
        apply_speed_options(backbone, "flash")
    with pytest.raises(InputError, match="attention 'flash_attention_2' cannot be used here"):
        apply_speed_options(backbone, "flash_attention_2")
    assert resolve_compile_mode("auto", torch.device("cpu")) == "default"
    assert resolve_compile_mode("auto", torch.device("cuda")) == "reduce-overhead"


def test_llava_style_models_compile_their_vision_tower() -> None:
    from toolkit.models.loading import load_backbone

    bb = load_backbone("tiny")
    images = _visuals(3)
    with torch.inference_mode():
        before = bb.level_logits(bb.scoring_batch(images, "quality", "image"))
    report = apply_speed_options(bb, "sdpa", "default", backend=TRACE_ONLY)
    try:
        assert report.compiled == ["vision_tower", "multi_modal_projector"]
        with torch.inference_mode():
            after = bb.level_logits(bb.scoring_batch(images, "quality", "image"))
    finally:
        uncompile(bb)
        torch._dynamo.reset()
    torch.testing.assert_close(after, before, atol=ATOL, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs and generated GPU kernels need a GPU")
def test_gpu_compiled_image_path_with_cuda_graphs() -> None:
    bb = load_onealign_backbone(FIXTURE, dtype="float32", device="cuda")
    images = _visuals(4)
    before = _logits(bb, images)
    try:
        report = apply_speed_options(bb, "sdpa", "auto", warmup=4)
        assert report.compile_mode == "reduce-overhead" and report.compiled == ["vision_model", "visual_abstractor"]
        for _ in range(3):  # CUDA graphs are recorded after a few calls, then replayed
            after = _logits(bb, images)
        assert report.compiled == ["vision_model", "visual_abstractor"], report.notes
    finally:
        uncompile(bb)
        torch._dynamo.reset()
    torch.testing.assert_close(after, before, atol=1e-4, rtol=0)  # TF32 and generated kernels round differently


def test_score_cli_takes_the_speed_switches(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``qalign score --attention/--compile`` reach the backbone, say what they did, and keep the scores."""
    from typer.testing import CliRunner

    import toolkit.scoring.compile as speed
    from toolkit.cli import app
    from toolkit.scoring.results import read_results

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, im in enumerate(_visuals(3)):
        im[0].save(folder / f"img{i}.png")
    runner = CliRunner()
    base = ["score", "--model", str(FIXTURE), "--device", "cpu", "--batch-size", "2", "--no-progress"]
    plain = runner.invoke(app, [*base, "--out", str(tmp_path / "plain.csv"), str(folder)])
    assert plain.exit_code == 0, plain.output
    assert "speed switches" not in plain.output

    # Trace-only compile: the CLI's switch runs the same path as the inductor one, in seconds on a CPU.
    real = speed.apply_speed_options
    monkeypatch.setattr(speed, "apply_speed_options", lambda *a, **k: real(*a, **{**k, "backend": TRACE_ONLY}))
    fast = runner.invoke(
        app, [*base, "--attention", "eager", "--compile", "default", "--out", str(tmp_path / "fast.csv"), str(folder)]
    )
    assert fast.exit_code == 0, fast.output
    assert "speed switches: attention eager; compile default; compiled" in fast.output
    a, b = read_results(tmp_path / "plain.csv"), read_results(tmp_path / "fast.csv")
    assert list(a["path"]) == list(b["path"])
    np.testing.assert_allclose(a[list(PROB_COLUMNS)].to_numpy(), b[list(PROB_COLUMNS)].to_numpy(), atol=ATOL)

    bad = runner.invoke(app, [*base, "--compile", "fastest", "--out", str(tmp_path / "bad.csv"), str(folder)])
    # Refused before the model loads (the CLI's main() turns the InputError into one line).
    assert isinstance(bad.exception, InputError) and "unknown compile mode 'fastest'" in str(bad.exception)
    assert not (tmp_path / "bad.csv").exists()
