"""Fine-tuning v1 on the tiny model: data reading, settings, learning, saving and reloading."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from toolkit.errors import InputError
from toolkit.models.loading import load_backbone
from toolkit.models.tiny import build_tiny_model
from toolkit.training import TrainConfig, TrainResult, load_training_data, read_record, train
from toolkit.training.schedule import warmup_cosine, warmup_steps_for

from conftest import ONEALIGN_TINY as ONEALIGN_FIXTURE
from fixtures_training import QUESTIONS, write_toy

QUESTION = QUESTIONS["quality"]


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("toy")
    return {
        "root": root,
        "model": build_tiny_model(root / "tiny", seed=0),
        "train": write_toy(root, "train", 256, seed=1),
        "heldout": write_toy(root, "heldout", 48, seed=2),
    }


def _config(toy: dict[str, Path], out: Path, **kw: object) -> TrainConfig:
    values: dict[str, object] = dict(
        model=str(toy["model"]), data=str(toy["train"]), out=str(out), device="cpu", cpu_threads=1, batch_size=8
    )
    values.update(kw)
    return TrainConfig(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def full_run(toy: dict[str, Path]) -> TrainResult:
    out = toy["root"] / "full"
    # Settings checked over several seeds: held-out SRCC goes from about 0.46 to 0.84-0.94.
    return train(
        _config(
            toy, out, mode="full", lr=2e-3, max_steps=80, batch_size=16, eval_data=str(toy["heldout"]), eval_every=40
        )
    )


def _scoring_logits(backbone, images: list[Image.Image]) -> torch.Tensor:
    with torch.no_grad():
        return backbone.level_logits(backbone.scoring_batch([[im] for im in images], "quality", "image"))


def _heldout_images(toy: dict[str, Path], n: int = 6) -> list[Image.Image]:
    records = json.loads(toy["heldout"].read_text())[:n]
    return [Image.open(toy["root"] / r["image"]).convert("RGB") for r in records]


# --------------------------------------------------------------------------- settings


def test_schedule_warms_up_then_decays_to_zero() -> None:
    total, warm = 100, warmup_steps_for(100, 0.03)
    assert warm == 3
    lrs = [warmup_cosine(s, total, warm) for s in range(total)]
    assert lrs[0] == pytest.approx(1 / 3) and lrs[2] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[2:], lrs[3:]))
    assert lrs[-1] < 0.01 and warmup_cosine(total, total, warm) == pytest.approx(0.0)


def test_config_checks_and_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="mode"):
        TrainConfig(mode="half")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="batch_size"):
        TrainConfig(batch_size=0)
    with pytest.raises(InputError, match="unknown loss"):
        TrainConfig(loss="mse")  # type: ignore[arg-type]
    assert TrainConfig(mode="full").learning_rate == 2e-5 and TrainConfig(mode="lora").learning_rate == 2e-4
    (tmp_path / "c.yaml").write_text("mode: full\nlr: 0.001\nbatch_size: 4\n")
    cfg = TrainConfig.from_file(tmp_path / "c.yaml", batch_size=2, lr=None)
    assert (cfg.mode, cfg.lr, cfg.batch_size) == ("full", 0.001, 2)
    (tmp_path / "c.json").write_text(json.dumps({"epochs": 2, "bogus": 1}))
    with pytest.raises(InputError, match="bogus"):
        TrainConfig.from_file(tmp_path / "c.json")


# --------------------------------------------------------------------------- data


def test_conversation_json_becomes_training_examples(toy: dict[str, Path], tmp_path: Path) -> None:
    frames = [toy["root"] / "img/train_0.png", toy["root"] / "img/train_1.png"]
    records = [
        {
            "id": "a",
            "image": "img/train_0.png",
            "gt_score": "3.5",
            "conversations": [
                {"from": "human", "value": QUESTION},
                {"from": "gpt", "value": "The quality of the image is fair."},
            ],
            "level_probs": [0.1, 0.2, 0.4, 0.2, 0.1],
        },
        {
            "id": "v",
            "image": [str(f) for f in frames],
            "conversations": [
                {"from": "human", "value": "Rate the quality of this video.\n<|image|>"},
                {"from": "gpt", "value": "The quality of the video is poor."},
            ],
        },
    ]
    path = tmp_path / "conv.json"
    path.write_text(json.dumps(records))
    data = load_training_data(path, images=toy["root"])
    assert len(data) == 2
    a, v = data[0], data[1]
    assert a.kind == "image" and len(a.frames) == 1 and a.frames[0].mode == "RGB"
    assert a.answer == "The quality of the image is fair." and a.meta["gt_score"] == 3.5
    assert list(a.level_distribution) == [0.1, 0.2, 0.4, 0.2, 0.1]
    assert v.kind == "video" and len(v.frames) == 2 and v.meta["level"] == 2
    assert data.targets() == [3.5, 2]


def test_conversation_json_errors_name_the_problem(toy: dict[str, Path], tmp_path: Path) -> None:
    good = json.loads(toy["heldout"].read_text())[:2]
    path = tmp_path / "conv.json"

    path.write_text(json.dumps([good[0], {**good[1], "image": "img/nowhere.png"}]))
    with pytest.raises(InputError, match="nowhere.png"):
        load_training_data(path, images=toy["root"])

    path.write_text(json.dumps([good[0], {**good[1], "conversations": [{"from": "human", "value": "hi"}]}]))
    with pytest.raises(InputError, match=r"record 1 .*'gpt'"):
        load_training_data(path, images=toy["root"])

    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    path.write_text(json.dumps([{**good[0], "image": "img/broken.png"}]))
    data = load_training_data(path)  # exists: found at access, not at load
    with pytest.raises(InputError, match="broken.png"):
        data[0]


def test_saved_hf_dataset_becomes_training_examples(toy: dict[str, Path], tmp_path: Path) -> None:
    import datasets as hf

    files = [str(toy["root"] / f"img/heldout_{i}.png") for i in range(3)]
    ds = hf.Dataset.from_dict(
        {
            "image": files,
            "question": ["Rate the quality of this image."] * 3,
            "answer": [f"The quality of the image is {w}." for w in ("good", "bad", "fair")],
            "level_probs": [[0.0, 1.0, 0.0, 0.0, 0.0]] * 3,
            "mos": [4.0, 1.0, 3.0],
        },
        features=hf.Features(
            {
                "image": hf.Image(),
                "question": hf.Value("string"),
                "answer": hf.Value("string"),
                "level_probs": hf.List(hf.Value("float64"), length=5),
                "mos": hf.Value("float64"),
            }
        ),
    )
    hf.DatasetDict({"train": ds, "test": ds.select([0])}).save_to_disk(str(tmp_path / "ds"))
    data = load_training_data(tmp_path / "ds")
    assert len(data) == 3 and data.targets() == [4.0, 1.0, 3.0]
    ex = data[1]
    assert ex.answer.endswith("bad.") and ex.frames[0].size == (32, 32) and ex.frames[0].mode == "RGB"
    assert list(ex.level_distribution) == [0.0, 1.0, 0.0, 0.0, 0.0]
    assert len(load_training_data(tmp_path / "ds", split="test")) == 1
    with pytest.raises(InputError, match="no split 'dev'"):
        load_training_data(tmp_path / "ds", split="dev")


def _write_mp4(path: Path, n_frames: int, fps: int) -> Path:
    import av

    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 48, 32, "yuv420p"
        for _ in range(n_frames):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 256, (32, 48, 3), dtype=np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_video_file_records_decode_at_one_frame_per_second(toy: dict[str, Path], tmp_path: Path) -> None:
    _write_mp4(tmp_path / "clip.mp4", n_frames=30, fps=10)  # 3 s: frames 0, 10, 20
    record = {
        "id": "clip",
        "image": "clip.mp4",
        "conversations": [
            {"from": "human", "value": "Rate the quality of this video.\n<|image|>"},
            {"from": "gpt", "value": "The quality of the video is good."},
        ],
    }
    (tmp_path / "v.json").write_text(json.dumps([record]))
    data = load_training_data(tmp_path / "v.json")
    ex = data[0]
    assert ex.kind == "video" and len(ex.frames) == 3 and ex.frames[0].size == (48, 32)
    assert len(load_training_data(tmp_path / "v.json", max_frames=2)[0].frames) == 2
    # A video's frames are consecutive images in one prompt, and a batch trains on them.
    backbone = load_backbone(toy["model"])
    batch = backbone.training_batch([ex])
    assert batch["pixel_values"].shape[0] == 3
    assert int((batch["input_ids"] == backbone.model.config.image_token_index).sum()) == 3 * 16


def test_saved_dataset_with_frame_lists(toy: dict[str, Path], tmp_path: Path) -> None:
    import datasets as hf

    frames = [[str(toy["root"] / f"img/heldout_{i + j}.png") for j in range(2)] for i in range(2)]
    ds = hf.Dataset.from_dict(
        {
            "frames": frames,
            "conversations": [
                [
                    {"from": "human", "value": "Rate the quality of this video."},
                    {"from": "gpt", "value": "The quality of the video is poor."},
                ]
            ]
            * 2,
        },
        features=hf.Features(
            {
                "frames": hf.List(hf.Image()),
                "conversations": hf.List({"from": hf.Value("string"), "value": hf.Value("string")}),
            }
        ),
    )
    ds.save_to_disk(str(tmp_path / "ds"))
    data = load_training_data(tmp_path / "ds")
    ex = data[1]
    assert ex.kind == "video" and len(ex.frames) == 2 and ex.meta["level"] == 2 and ex.level_distribution is None


# --------------------------------------------------------------------------- training


def test_full_training_learns_the_toy_task(full_run: TrainResult) -> None:
    assert full_run.steps == 80 and len(full_run.losses) == 80
    assert full_run.trainable_parameters == full_run.total_parameters
    assert np.mean(full_run.losses[:5]) > 5.0  # random init: about ln(vocabulary)
    assert full_run.final_loss < 1.0
    before, after = full_run.heldout[0], full_run.heldout[-1]
    assert [h.step for h in full_run.heldout] == [0, 40, 80]
    assert after.loss < before.loss / 5
    # Ranking of unseen images by the Q-Align score: chance before, clearly learned after.
    assert after.srcc is not None and after.srcc > 0.7
    assert after.srcc > (before.srcc or 0.0) + 0.2
    assert full_run.samples == 80 * 16 and full_run.samples_per_s > 0


def test_full_model_saves_and_reloads(full_run: TrainResult, toy: dict[str, Path]) -> None:
    out = full_run.output_dir
    assert (out / "config.json").is_file() and (out / "chat_template.jinja").is_file()
    record = read_record(out)
    assert record["config"]["mode"] == "full" and record["result"]["steps"] == 80
    assert len(record["result"]["losses"]) == 80 and record["result"]["heldout"][-1]["step"] == 80
    images = _heldout_images(toy)
    reloaded = load_backbone(out)
    torch.testing.assert_close(
        _scoring_logits(reloaded, images), _scoring_logits(full_run.backbone, images), atol=1e-5, rtol=0
    )
    base = load_backbone(toy["model"])
    assert (_scoring_logits(base, images) - _scoring_logits(reloaded, images)).abs().max() > 0.1


def test_lora_adapter_saves_and_reloads(full_run: TrainResult, toy: dict[str, Path]) -> None:
    # LoRA on top of the fine-tuned model (the realistic case: adapters on a pretrained model).
    out = toy["root"] / "lora"
    result = train(
        _config(
            toy,
            out,
            model=str(full_run.output_dir),
            mode="lora",
            lr=5e-2,
            max_steps=6,
            lora_r=4,
            lora_alpha=8,
            lora_dropout=0.0,
            trainable_modules=["multi_modal_projector"],
        )
    )
    assert 0 < result.trainable_parameters < result.total_parameters / 5
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
    assert not (out / "model.safetensors").exists()  # only the adapter is saved
    assert read_record(out)["config"]["mode"] == "lora"
    images = _heldout_images(toy)
    trained = _scoring_logits(result.backbone, images)
    with_adapter = load_backbone(full_run.output_dir, adapter=out)
    torch.testing.assert_close(_scoring_logits(with_adapter, images), trained, atol=1e-5, rtol=0)
    merged = load_backbone(full_run.output_dir, adapter=out, merge=True)
    assert not hasattr(merged.model, "peft_config")
    torch.testing.assert_close(_scoring_logits(merged, images), trained, atol=1e-4, rtol=0)
    base = _scoring_logits(load_backbone(full_run.output_dir), images)
    assert (base - trained).abs().max() > 1e-3  # the adapter changed the model


def test_the_same_loop_trains_onealign(tmp_path: Path) -> None:
    # The reference records (an image, another task, a video as frame files) through the
    # OneAlign backbone: LoRA with the Q-Align recipe's targets, then a reload with the adapter.
    fixture = ONEALIGN_FIXTURE
    result = train(
        TrainConfig(
            model=str(fixture),
            data=str(fixture / "training_records.json"),
            out=str(tmp_path / "oa"),
            lr=1e-2,
            max_steps=3,
            batch_size=3,
            device="cpu",
            cpu_threads=1,
        )
    )
    assert result.losses[-1] < result.losses[0]
    peft_config = result.backbone.model.peft_config["default"]
    assert "multiway" in str(peft_config.target_modules) and "visual_abstractor" in peft_config.modules_to_save
    trainable = {n for n, p in result.backbone.model.named_parameters() if p.requires_grad}
    assert not any("vision_model" in n for n in trainable)  # the vision encoder stays frozen
    assert any("visual_abstractor" in n for n in trainable)
    image = Image.open(fixture / "images" / "img0_gradient_64x64.png").convert("RGB")
    reloaded = load_backbone(fixture, adapter=tmp_path / "oa")
    torch.testing.assert_close(
        _scoring_logits(reloaded, [image]), _scoring_logits(result.backbone, [image]), atol=1e-5, rtol=0
    )

    # Full mode: the folder holds the model plus the base's tokenizer and preprocessor files.
    full = train(
        TrainConfig(
            model=str(fixture),
            data=str(fixture / "training_records.json"),
            out=str(tmp_path / "full"),
            mode="full",
            lr=1e-3,
            max_steps=1,
            batch_size=3,
            device="cpu",
            cpu_threads=1,
        )
    )
    names = {p.name for p in (tmp_path / "full").iterdir()}
    assert {"config.json", "tokenizer.model", "preprocessor_config.json", "qalign_train.json"} <= names
    assert "expected.json" not in names  # only files that define the model's inputs are copied
    reloaded = load_backbone(tmp_path / "full")
    torch.testing.assert_close(
        _scoring_logits(reloaded, [image]), _scoring_logits(full.backbone, [image]), atol=1e-5, rtol=0
    )


def test_training_is_deterministic_for_a_seed(toy: dict[str, Path]) -> None:
    runs = [
        train(_config(toy, toy["root"] / f"det{i}", mode="full", lr=1e-3, max_steps=3, seed=seed))
        for i, seed in enumerate((5, 5, 6))
    ]
    assert runs[0].losses == runs[1].losses
    assert runs[0].losses != runs[2].losses
    a, b = runs[:2]
    for (na, pa), (nb, pb) in zip(a.backbone.model.named_parameters(), b.backbone.model.named_parameters()):
        assert na == nb and torch.equal(pa, pb), na


def test_dataloader_workers_give_the_same_run(toy: dict[str, Path]) -> None:
    runs = [
        train(_config(toy, toy["root"] / f"workers{n}", mode="full", lr=1e-3, max_steps=2, seed=1, num_workers=n))
        for n in (0, 2)
    ]
    assert runs[0].losses == runs[1].losses


def test_refuses_to_overwrite_a_foreign_folder(toy: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(InputError, match="not empty"):
        train(_config(toy, tmp_path, max_steps=1))
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_a_model_already_in_memory_is_trained_in_place(toy: dict[str, Path], tmp_path: Path) -> None:
    """``train(config, backbone=...)`` trains the given model instead of loading ``config.model``
    again, with the same result as loading it."""
    images = _heldout_images(toy, 4)
    settings = dict(mode="full", lr=2e-3, max_steps=4, seed=3)
    loaded = train(_config(toy, tmp_path / "loaded", **settings))
    given = load_backbone(toy["model"], dtype="float32", device="cpu")
    before = _scoring_logits(given, images)
    result = train(_config(toy, tmp_path / "given", **settings), backbone=given)
    assert result.backbone is given
    after = _scoring_logits(given, images)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, _scoring_logits(loaded.backbone, images), atol=1e-6, rtol=0)
    assert (tmp_path / "given" / "config.json").is_file()  # saved like any run
