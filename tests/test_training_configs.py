"""The files shipped in ``configs/``: training settings that load, and launcher files that agree."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from toolkit.training import TrainConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TRAINING_FILES = ["onealign-lora.yaml", "onealign-full.yaml", "multitask.yaml"]


@pytest.mark.parametrize("name", TRAINING_FILES)
def test_training_settings_load(name: str) -> None:
    config = TrainConfig.from_file(CONFIGS / name)
    assert config.recipe is not None and config.recipe.startswith("onealign")
    assert config.model == "q-future/one-align"


def test_recipe_files_say_what_the_recipes_are() -> None:
    lora = TrainConfig.from_file(CONFIGS / "onealign-lora.yaml")
    assert (lora.mode, lora.lora_r, lora.lora_alpha, lora.learning_rate) == ("lora", 128, 256, 2e-4)
    assert (
        lora.batch_size * lora.grad_accum * 2 == 64
    )  # the reference global batch on the 2 GPUs of accelerate_ddp.yaml
    full = TrainConfig.from_file(CONFIGS / "onealign-full.yaml")
    assert (full.mode, full.learning_rate, full.epochs, full.gradient_checkpointing) == ("full", 2e-5, 2.0, True)
    mixed = TrainConfig.from_file(CONFIGS / "multitask.yaml")
    assert len(mixed.data_paths) == len(mixed.image_roots) == len(mixed.weights or []) == 3


def test_launcher_files_agree() -> None:
    zero3 = yaml.safe_load((CONFIGS / "accelerate_zero3.yaml").read_text())
    assert zero3["distributed_type"] == "DEEPSPEED"
    ds_path = Path(zero3["deepspeed_config"]["deepspeed_config_file"])
    ds = json.loads((CONFIGS.parent / ds_path).read_text())
    assert ds["zero_optimization"]["stage"] == 3
    # The final and best models are gathered from the shards when saved.
    assert ds["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    # Batch sizes and accumulation come from the training settings, not from this file.
    assert ds["train_micro_batch_size_per_gpu"] == ds["gradient_accumulation_steps"] == "auto"
    ddp = yaml.safe_load((CONFIGS / "accelerate_ddp.yaml").read_text())
    assert ddp["distributed_type"] == "MULTI_GPU" and ddp["num_processes"] == 2


def test_accelerate_takes_the_zero3_launcher_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """accelerate refuses a launcher file that sets, beside a DeepSpeed file, what only that file may
    set (mixed precision, accumulation, ...); check the shipped one the way ``accelerate launch`` does."""
    from accelerate.utils import DeepSpeedPlugin

    zero3 = yaml.safe_load((CONFIGS / "accelerate_zero3.yaml").read_text())
    fields = list(zero3["deepspeed_config"]) + (["mixed_precision"] if "mixed_precision" in zero3 else [])
    monkeypatch.setenv("ACCELERATE_CONFIG_DS_FIELDS", ",".join(fields).lower())
    plugin = DeepSpeedPlugin(hf_ds_config=str(CONFIGS.parent / zero3["deepspeed_config"]["deepspeed_config_file"]))
    assert plugin.zero_stage == 3
    # The same check fails for a launcher file that also names the precision.
    monkeypatch.setenv("ACCELERATE_CONFIG_DS_FIELDS", ",".join(fields + ["mixed_precision"]).lower())
    with pytest.raises(ValueError, match="ignored"):
        DeepSpeedPlugin(hf_ds_config=str(CONFIGS.parent / zero3["deepspeed_config"]["deepspeed_config_file"]))
