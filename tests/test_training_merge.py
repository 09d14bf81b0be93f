"""Merging a LoRA adapter into its base model (library and ``qalign merge``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from toolkit.cli import app
from toolkit.errors import InputError
from toolkit.models.loading import load_backbone
from toolkit.models.tiny import build_tiny_model
from toolkit.training import TrainConfig, train
from toolkit.training.adapter_merge import merge_adapter

from conftest import ONEALIGN_TINY as FIXTURE
from fixtures_training import write_toy


def _logits(backbone, images: list[Image.Image]) -> torch.Tensor:
    with torch.no_grad():
        return backbone.level_logits(backbone.scoring_batch([[im] for im in images], "quality", "image"))


@pytest.fixture(scope="module")
def adapter(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("merge")
    model = build_tiny_model(root / "tiny")
    data = write_toy(root, "train", 16, seed=1)
    out = root / "adapter"
    # A large learning rate so that the adapter (and the fully trained projector) move the logits.
    train(
        TrainConfig(
            model=str(model),
            data=str(data),
            out=str(out),
            mode="lora",
            lr=5e-2,
            max_steps=4,
            batch_size=8,
            lora_r=4,
            lora_alpha=8,
            trainable_modules=["multi_modal_projector"],
            device="cpu",
            cpu_threads=1,
        )
    )
    images = [Image.open(root / f"img/train_{i}.png").convert("RGB") for i in range(4)]
    return {"root": root, "model": model, "adapter": out, "images": images}  # type: ignore[dict-item]


def test_merged_model_equals_base_plus_adapter(adapter: dict) -> None:
    out = adapter["root"] / "merged"
    result = merge_adapter(adapter["adapter"], out, model=adapter["model"])
    assert result.dtype == "float32" and not (out / "adapter_config.json").exists()
    assert (out / "model.safetensors").is_file() and (out / "chat_template.jinja").is_file()
    merged = load_backbone(out)
    assert not hasattr(merged.model, "peft_config")
    with_adapter = load_backbone(adapter["model"], adapter=adapter["adapter"])
    torch.testing.assert_close(
        _logits(merged, adapter["images"]), _logits(with_adapter, adapter["images"]), atol=1e-5, rtol=0
    )
    base = load_backbone(adapter["model"])
    assert (_logits(base, adapter["images"]) - _logits(merged, adapter["images"])).abs().max() > 1e-3


def test_merge_command_finds_the_base_model_and_guards_its_output(adapter: dict) -> None:
    out = adapter["root"] / "merged-cli"
    runner = CliRunner()
    result = runner.invoke(
        app, ["merge", "--adapter", str(adapter["adapter"]), "--out", str(out), "--dtype", "bfloat16"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads((out / "qalign_merge.json").read_text())["dtype"] == "bfloat16"
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    again = runner.invoke(app, ["merge", "--adapter", str(adapter["adapter"]), "--out", str(out)])
    assert again.exit_code != 0 and "--overwrite" in str(again.exception)  # an earlier merge: kept without it
    again = runner.invoke(app, ["merge", "--adapter", str(adapter["adapter"]), "--out", str(out), "--overwrite"])
    assert again.exit_code == 0, again.output  # ... and replaced with it
    assert json.loads((out / "qalign_merge.json").read_text())["dtype"] == "float32"
    assert json.loads((out / ".qalign-output").read_text())["written_by"] == "qalign merge"
    foreign = adapter["root"] / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    for overwrite in (False, True):  # a folder the toolkit did not write is never replaced
        with pytest.raises(InputError, match=f"{foreign} is not empty and was not written by qalign"):
            merge_adapter(adapter["adapter"], foreign, overwrite=overwrite)
    assert [p.name for p in foreign.iterdir()] == ["keep.txt"]
    empty = adapter["root"] / "empty"
    empty.mkdir()
    assert (merge_adapter(adapter["adapter"], empty).output_dir / "model.safetensors").is_file()
    with pytest.raises(InputError, match="not a LoRA adapter"):
        merge_adapter(adapter["model"], adapter["root"] / "x")


def test_a_onealign_adapter_merges_into_the_native_model(tmp_path: Path) -> None:
    out = tmp_path / "adapter"
    train(
        TrainConfig(
            recipe="onealign-lora",
            model=str(FIXTURE),
            data=str(FIXTURE / "training_records.json"),
            out=str(out),
            lora_r=8,
            lora_alpha=16,
            max_steps=2,
            batch_size=3,
            lr=2e-2,
            gradient_checkpointing=False,
            device="cpu",
            cpu_threads=1,
        )
    )
    merge_adapter(out, tmp_path / "merged")
    names = {p.name for p in (tmp_path / "merged").iterdir()}
    assert {"config.json", "tokenizer.model", "preprocessor_config.json"} <= names
    image = Image.open(FIXTURE / "images" / "img0_gradient_64x64.png").convert("RGB")
    merged, with_adapter = load_backbone(tmp_path / "merged"), load_backbone(FIXTURE, adapter=out)
    torch.testing.assert_close(_logits(merged, [image]), _logits(with_adapter, [image]), atol=1e-5, rtol=0)
    assert (_logits(load_backbone(FIXTURE), [image]) - _logits(merged, [image])).abs().max() > 1e-3
