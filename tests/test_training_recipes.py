"""Recipe presets: the settings they stand for, and what they make trainable on real module names."""

from __future__ import annotations

import json
import re
from dataclasses import fields
from pathlib import Path

import pytest
import torch

from toolkit.errors import InputError
from toolkit.models.loading import load_backbone
from toolkit.models.tiny import build_tiny_model
from toolkit.training import TrainConfig, read_record, train
from toolkit.training.config import model_defaults
from toolkit.training.lora import frozen_modules, lora_targets, prepare_trainable
from toolkit.training.recipes import (
    HF_LORA_TARGETS,
    HF_PROJECTOR_MODULES,
    HF_VISION_TOWERS,
    RECIPE_FAMILIES,
    RECIPES,
    check_recipe_fits,
)

from conftest import ONEALIGN_TINY as FIXTURE
from fixtures_training import write_toy


def _trainable(model: torch.nn.Module) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_recipe_values_and_precedence(tmp_path: Path) -> None:
    lora = TrainConfig(recipe="onealign-lora")
    assert (lora.mode, lora.lora_r, lora.lora_alpha, lora.lora_dropout) == ("lora", 128, 256, 0.05)
    assert lora.trainable_modules == ["visual_abstractor"] and lora.learning_rate == 2e-4 and lora.epochs == 3
    assert lora.gradient_checkpointing and lora.dtype == "auto"
    full = TrainConfig(recipe="onealign-full")
    assert (full.mode, full.learning_rate, full.epochs, full.warmup_ratio, full.weight_decay) == (
        "full",
        2e-5,
        2,
        0.03,
        0.0,
    )
    # Explicit settings win, in the constructor as in files, even when equal to a plain default.
    assert TrainConfig(recipe="onealign-lora", lr=1e-3, lora_r=16).learning_rate == 1e-3
    assert TrainConfig.from_dict({"recipe": "onealign-full", "epochs": 3.0}).epochs == 3.0
    (tmp_path / "r.yaml").write_text("recipe: onealign-lora\nlora_r: 8\n")
    cfg = TrainConfig.from_file(tmp_path / "r.yaml", lr=5e-4)
    assert (cfg.recipe, cfg.lora_r, cfg.lora_alpha, cfg.learning_rate) == ("onealign-lora", 8, 256, 5e-4)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg  # the recorded settings reproduce the run's
    with pytest.raises(InputError, match="unknown recipe"):
        TrainConfig(recipe="llava-13b")


def test_a_given_setting_wins_over_the_recipe_even_when_it_equals_the_default() -> None:
    plain = TrainConfig()
    assert (plain.lora_r, plain.dtype, plain.gradient_checkpointing, plain.trainable_modules) == (
        8,
        "float32",
        False,
        [],
    )
    # 8 is also the plain default of lora_r: the recipe must not take it for "not given".
    for config in (
        TrainConfig(recipe="onealign-lora", lora_r=8),
        TrainConfig.from_recipe("onealign-lora", lora_r=8),
        TrainConfig.from_dict({"recipe": "onealign-lora", "lora_r": 8}),
    ):
        assert (config.lora_r, config.lora_alpha, config.trainable_modules) == (8, 256, ["visual_abstractor"])
    config = TrainConfig(recipe="onealign-lora", dtype="float32", gradient_checkpointing=False, trainable_modules=[])
    assert (config.dtype, config.gradient_checkpointing, config.trainable_modules) == ("float32", False, [])
    assert (config.lora_r, config.mode) == (128, "lora")
    # None is "not given": the recipe's value, or the plain default where the recipe has none.
    config = TrainConfig.from_recipe("hf-full", lr=None, batch_size=None)
    assert (config.lr, config.batch_size) == (2e-5, 8)


def test_recipes_set_only_settings_that_exist_and_resolve_every_field() -> None:
    names = {f.name for f in fields(TrainConfig)}
    for recipe, values in RECIPES.items():
        assert set(values) <= names, recipe
        config = TrainConfig(recipe=recipe)
        assert all(getattr(config, k) == v for k, v in values.items())
        # Only settings whose plain default (the model's own, where it has one) is None stay None.
        own = model_defaults(config.model)
        assert {f.name for f in fields(config) if getattr(config, f.name) is None} == {
            f.name
            for f in fields(config)
            if own.get(f.name, f.metadata["default"]) is None and f.name not in (*values, "recipe")
        }
    # No two configs share a list: a run that changes its own leaves the recipe and the others alone.
    a, b = TrainConfig(recipe="hf-lora"), TrainConfig(recipe="hf-lora")
    a.trainable_modules.append("extra")
    assert "extra" not in b.trainable_modules and "extra" not in RECIPES["hf-lora"]["trainable_modules"]


def test_the_recorded_settings_are_the_resolved_ones() -> None:
    config = TrainConfig.from_recipe("onealign-full", epochs=3.0, seed=4)
    record = config.to_dict()
    assert (record["mode"], record["lr"], record["epochs"], record["seed"], record["dtype"]) == (
        "full",
        2e-5,
        3.0,
        4,
        "auto",
    )
    assert record["lora_r"] == 8 and record["frozen_modules"] == []  # plain defaults where the recipe has none
    assert TrainConfig.from_dict(json.loads(json.dumps(record))) == config


def test_onealign_lora_recipe_trains_what_the_reference_trains() -> None:
    backbone = load_backbone(FIXTURE)
    n_layers = backbone.model.config.num_hidden_layers
    model = prepare_trainable(backbone.model, TrainConfig(recipe="onealign-lora"))
    peft = model.peft_config["default"]
    assert (peft.r, peft.lora_alpha, peft.lora_dropout) == (128, 256, 0.05)
    trainable = _trainable(model)
    lora = {n for n in trainable if ".lora_" in n}
    wrapped = {re.sub(r"\.lora_[AB]\.default\.weight$", "", n).removeprefix("base_model.model.") for n in lora}
    assert wrapped == {
        f"model.layers.{i}.self_attn.{m}" for i in range(n_layers) for m in ("q_proj", "v_proj.multiway.1")
    }
    rest = trainable - lora
    assert rest and all(".visual_abstractor.modules_to_save." in n for n in rest)  # the abstractor, in full
    n_abstractor = sum(1 for n, _ in backbone.model.named_parameters() if ".visual_abstractor.original_module." in n)
    assert len(rest) == n_abstractor
    assert not any("vision_model" in n or "embed_tokens" in n or "lm_head" in n for n in trainable)
    assert model.base_model.model.is_activation_checkpointing


def test_onealign_full_recipe_trains_everything() -> None:
    backbone = load_backbone(FIXTURE)
    names = {n for n, _ in backbone.model.named_parameters()}
    model = prepare_trainable(backbone.model, TrainConfig(recipe="onealign-full"))
    assert _trainable(model) == names
    assert any(n.startswith("model.vision_model.") for n in names)


def test_hf_recipes_on_a_llava_model(tmp_path: Path) -> None:
    path = build_tiny_model(tmp_path / "tiny")
    lora = prepare_trainable(load_backbone(path).model, TrainConfig(recipe="hf-lora"))
    trainable = _trainable(lora)
    adapted = {n.split(".self_attn.")[1].split(".")[0] for n in trainable if ".lora_" in n}
    assert adapted == {"q_proj", "k_proj", "v_proj", "o_proj"}
    assert all("language_model" in n for n in trainable if ".lora_" in n)
    assert any("multi_modal_projector.modules_to_save" in n for n in trainable)
    assert not any("vision_tower" in n for n in trainable)

    full = prepare_trainable(load_backbone(path).model, TrainConfig(recipe="hf-full"))
    names = {n for n, _ in full.named_parameters()}
    assert _trainable(full) == {n for n in names if ".vision_tower." not in n}


def test_a_recipe_refuses_the_other_architecture(tmp_path: Path) -> None:
    check_recipe_fits("hf-lora", "llava")
    with pytest.raises(InputError, match="for OneAlign"):
        check_recipe_fits("onealign-lora", "llava")
    with pytest.raises(InputError, match="onealign-full"):
        check_recipe_fits("hf-full", "mplug_owl2")
    assert {"onealign-lora", "onealign-full", "hf-lora", "hf-full"} < set(RECIPES)
    assert set(RECIPES) - set(RECIPE_FAMILIES) == {"onealign-lora", "onealign-full", "hf-lora", "hf-full"}


def test_placeholders_resolve_through_the_family_table() -> None:
    from types import SimpleNamespace

    def model(model_type: str) -> torch.nn.Module:
        return SimpleNamespace(config=SimpleNamespace(model_type=model_type))  # type: ignore[return-value]

    lora, full = TrainConfig(recipe="hf-lora"), TrainConfig(recipe="hf-full")
    # hf-lora / hf-full record the generic names; a model of the table gets its family's parts.
    assert (lora.lora_target_modules, lora.trainable_modules, full.frozen_modules) == (
        HF_LORA_TARGETS,
        HF_PROJECTOR_MODULES,
        HF_VISION_TOWERS,
    )
    assert lora_targets(model("qwen3_vl"), lora) == lora_targets(model("qwen3_vl"), TrainConfig(recipe="qwen-vl-lora"))
    targets, trainable = lora_targets(model("qwen3_vl"), lora)
    assert trainable == ["visual.merger", "visual.deepstack_merger_list"]
    assert re.fullmatch(targets, "model.language_model.layers.3.self_attn.k_proj")
    assert not re.fullmatch(targets, "model.visual.blocks.0.attn.qkv")
    assert not re.fullmatch(targets, "model.language_model.layers.3.mlp.up_proj")
    assert frozen_modules(model("qwen3_vl"), full) == ["visual.patch_embed", "visual.pos_embed", "visual.blocks"]
    # The plain default (q_proj and v_proj of the language model) follows the family's language model.
    targets, trainable = lora_targets(model("smolvlm"), TrainConfig())
    assert re.fullmatch(targets, "model.text_model.layers.0.self_attn.v_proj") and trainable == []
    assert not re.fullmatch(targets, "model.text_model.layers.0.self_attn.k_proj")
    # A model outside the table gets the generic names; explicit names are used as given.
    assert lora_targets(model("somevlm"), lora) == (HF_LORA_TARGETS, HF_PROJECTOR_MODULES)
    assert frozen_modules(model("somevlm"), full) == HF_VISION_TOWERS
    given = TrainConfig(recipe="hf-lora", lora_target_modules=["q_proj"], trainable_modules=["head", "@projector"])
    assert lora_targets(model("gemma3"), given) == (["q_proj"], ["head", "multi_modal_projector"])
    with pytest.raises(InputError, match="unknown module placeholder '@projecter'"):
        lora_targets(model("gemma3"), TrainConfig(recipe="hf-lora", trainable_modules=["@projecter"]))
    with pytest.raises(InputError, match="unknown LoRA target placeholder"):
        lora_targets(model("gemma3"), TrainConfig(lora_target_modules="@lm"))


def test_the_onealign_lora_recipe_runs_and_its_adapter_loads(tmp_path: Path) -> None:
    # The whole recipe (r 128, gradient checkpointing, dtype auto = float32 on a CPU) for two steps.
    out = tmp_path / "adapter"
    result = train(
        TrainConfig(
            recipe="onealign-lora",
            model=str(FIXTURE),
            data=str(FIXTURE / "training_records.json"),
            out=str(out),
            max_steps=2,
            batch_size=3,
            lr=1e-2,
            device="cpu",
            cpu_threads=1,
        )
    )
    assert result.losses[1] < result.losses[0]
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 128
    assert read_record(out)["config"]["recipe"] == "onealign-lora"
    from PIL import Image

    image = Image.open(FIXTURE / "images" / "img0_gradient_64x64.png").convert("RGB")
    reloaded = load_backbone(FIXTURE, adapter=out)
    with torch.no_grad():
        a = reloaded.level_logits(reloaded.scoring_batch([[image]], "quality", "image"))
        result.backbone.model.eval()
        b = result.backbone.level_logits(result.backbone.scoring_batch([[image]], "quality", "image"))
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_the_untrained_tiny_model_defaults_to_full_mode_on_one_thread(tmp_path: Path) -> None:
    folder = tmp_path / "tiny"
    folder.mkdir()
    (folder / "qalign_tiny.json").write_text("{}")  # what marks a tiny model build_tiny_model wrote
    for model in ("tiny", str(folder)):
        config = TrainConfig(model=model, data="d.json")
        assert (config.mode, config.cpu_threads, config.learning_rate) == ("full", 1, 2e-5)
        # Given settings and a recipe's values still win over the model's defaults.
        given = TrainConfig(model=model, data="d.json", mode="lora", cpu_threads=2)
        assert (given.mode, given.cpu_threads) == ("lora", 2)
        assert TrainConfig.from_recipe("hf-lora", model=model, data="d.json").mode == "lora"
    # Once fine-tuned (its record beside it) the folder is an ordinary model again.
    (folder / "qalign_train.json").write_text("{}")
    assert (TrainConfig(model=str(folder), data="d.json").mode, TrainConfig(model=str(folder)).cpu_threads) == (
        "lora",
        None,
    )
    assert TrainConfig(model="q-future/one-align", data="d.json").mode == "lora"


def test_lora_asked_for_on_the_untrained_tiny_model_still_warns(tmp_path: Path) -> None:
    model = build_tiny_model(tmp_path / "tiny")
    data = write_toy(tmp_path, "train", 4, seed=0)
    with pytest.warns(UserWarning, match="LoRA on random weights"):
        train(TrainConfig(model=str(model), data=str(data), out=str(tmp_path / "o"), mode="lora", max_steps=1))
