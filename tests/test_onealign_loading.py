"""Loading OneAlign checkpoints: Auto classes without remote code, .bin shards, dtypes, strictness."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from toolkit.errors import InputError
from toolkit.models.onealign import (  # importing it registers mplug_owl2 with the Auto classes
    CheckpointMismatchError,
    MPLUGOwl2Config,
    MPLUGOwl2LlamaForCausalLM,
    load_onealign_backbone,
)
from toolkit.models.onealign.vision import sincos_1d, sincos_2d_with_cls

from conftest import ONEALIGN_TINY as FIXTURE

EXPECTED = json.loads((FIXTURE / "expected.json").read_text())
SIDE_FILES = [
    "config.json",
    "generation_config.json",
    "preprocessor_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "tokenizer_config.json",
]
IMG0 = EXPECTED["images"]["img0_gradient_64x64.png"]


@pytest.fixture(scope="module")
def weights() -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for shard in sorted(FIXTURE.glob("model-*.safetensors")):
        out.update(load_file(shard))
    return out


def _copy_side_files(dst: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for name in SIDE_FILES:
        shutil.copy(FIXTURE / name, dst / name)
    return dst


def _write_safetensors(dst: Path, tensors: dict[str, torch.Tensor]) -> Path:
    _copy_side_files(dst)
    save_file({k: v.contiguous() for k, v in tensors.items()}, dst / "model.safetensors", metadata={"format": "pt"})
    return dst


def _image0_quality_logits(model: MPLUGOwl2LlamaForCausalLM) -> torch.Tensor:
    from toolkit.models.onealign import OneAlignBackbone, OneAlignProcessor

    with Image.open(FIXTURE / IMG0["file"]) as img:
        frames = [img.convert("RGB")]
    bb = OneAlignBackbone(model, OneAlignProcessor.from_pretrained(FIXTURE))
    return bb.level_logits(bb.scoring_batch([frames], "quality", "image"))[0]


def test_auto_model_loads_without_remote_code() -> None:
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(FIXTURE)
    assert isinstance(config, MPLUGOwl2Config) and "AutoModelForCausalLM" in config.auto_map
    # trust_remote_code is neither given nor needed: the auto_map's .py files are not in the folder.
    model = AutoModelForCausalLM.from_pretrained(FIXTURE, device_map="cpu")
    assert isinstance(model, MPLUGOwl2LlamaForCausalLM)
    assert model.device.type == "cpu" and not model.training
    logits = _image0_quality_logits(model)
    np.testing.assert_allclose(logits.numpy(), IMG0["quality"]["level_logits"], atol=1e-4, rtol=0)


def test_bfloat16_from_bin_shards(tmp_path: Path, weights: dict[str, torch.Tensor]) -> None:
    # The released checkpoint's layout: bfloat16 pickles in two shards plus pytorch_model.bin.index.json.
    dst = _copy_side_files(tmp_path / "bin")
    index = json.loads((FIXTURE / "model.safetensors.index.json").read_text())
    weight_map = {}
    for i, shard in enumerate(sorted(set(index["weight_map"].values())), start=1):
        name = f"pytorch_model-{i:05d}-of-00002.bin"
        part = {k: weights[k].to(torch.bfloat16) for k, s in index["weight_map"].items() if s == shard}
        torch.save(part, dst / name)
        weight_map.update(dict.fromkeys(part, name))
    (dst / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))

    bf16 = MPLUGOwl2LlamaForCausalLM.from_pretrained(dst, dtype=torch.bfloat16)
    assert {p.dtype for p in bf16.parameters()} == {torch.bfloat16}
    logits = _image0_quality_logits(bf16)
    assert torch.isfinite(logits).all()
    # bfloat16 compute moves logits by about 1e-2 to 3e-2 (fixture README); their spread is about 4.
    np.testing.assert_allclose(logits.numpy(), IMG0["quality"]["level_logits"], atol=0.06, rtol=0)

    # The same bf16 weights upcast to float32: only the weight rounding remains.
    fp32 = load_onealign_backbone(dst, dtype="float32").model
    assert {p.dtype for p in fp32.parameters()} == {torch.float32}
    np.testing.assert_allclose(_image0_quality_logits(fp32).numpy(), IMG0["quality"]["level_logits"], atol=0.05, rtol=0)


def test_missing_tensor_is_an_error_naming_it(tmp_path: Path, weights: dict[str, torch.Tensor]) -> None:
    dropped = "model.layers.0.self_attn.k_proj.multiway.1.weight"
    dst = _write_safetensors(tmp_path / "missing", {k: v for k, v in weights.items() if k != dropped})
    with pytest.raises(CheckpointMismatchError, match=r"1 missing tensor\(s\): " + dropped.replace(".", r"\.")):
        MPLUGOwl2LlamaForCausalLM.from_pretrained(dst)
    from transformers import AutoModelForCausalLM

    with pytest.raises(InputError, match=dropped.replace(".", r"\.")):
        AutoModelForCausalLM.from_pretrained(dst)
    with pytest.raises(InputError, match="missing tensor"):
        load_onealign_backbone(dst)
    # Opting out loads it (the tensor is then freshly initialised).
    model = MPLUGOwl2LlamaForCausalLM.from_pretrained(dst, strict=False)
    assert model.get_parameter(dropped).shape == weights[dropped].shape


def test_unexpected_tensor_is_an_error(tmp_path: Path, weights: dict[str, torch.Tensor]) -> None:
    extra = dict(weights)
    extra["model.layers.0.self_attn.k_proj.multiway.2.weight"] = weights[
        "model.layers.0.self_attn.k_proj.multiway.1.weight"
    ].clone()
    dst = _write_safetensors(tmp_path / "extra", extra)
    with pytest.raises(
        CheckpointMismatchError, match=r"unexpected tensor\(s\): model\.layers\.0\.self_attn\.k_proj\.multiway\.2"
    ):
        MPLUGOwl2LlamaForCausalLM.from_pretrained(dst)


def test_position_tables_rebuilt_when_absent(tmp_path: Path, weights: dict[str, torch.Tensor]) -> None:
    # The stored sin-cos tables equal the formula; a checkpoint without them is complete.
    cfg = MPLUGOwl2Config.from_pretrained(FIXTURE).abstractor_settings()
    q_ref = weights["model.visual_abstractor.encoder.layers.1.crossattention.attention.q_pos_embed"]
    k_ref = weights["model.visual_abstractor.encoder.layers.1.crossattention.attention.k_pos_embed"]
    np.testing.assert_allclose(
        sincos_1d(cfg.hidden_size, np.arange(cfg.num_learnable_queries)), q_ref.numpy(), atol=1e-6
    )
    np.testing.assert_allclose(sincos_2d_with_cls(cfg.hidden_size, cfg.grid_size), k_ref.numpy(), atol=1e-6)

    dst = _write_safetensors(tmp_path / "nopos", {k: v for k, v in weights.items() if not k.endswith("_pos_embed")})
    model = MPLUGOwl2LlamaForCausalLM.from_pretrained(dst)
    buffers = dict(model.named_buffers())
    torch.testing.assert_close(
        buffers["model.visual_abstractor.encoder.layers.1.crossattention.attention.k_pos_embed"], k_ref
    )
    torch.testing.assert_close(
        buffers["model.visual_abstractor.encoder.layers.0.crossattention.attention.q_pos_embed"], q_ref
    )
    np.testing.assert_allclose(
        _image0_quality_logits(model).numpy(), IMG0["quality"]["level_logits"], atol=1e-4, rtol=0
    )


def test_save_and_reload_keeps_names_and_outputs(tmp_path: Path, weights: dict[str, torch.Tensor]) -> None:
    model = MPLUGOwl2LlamaForCausalLM.from_pretrained(FIXTURE)
    model.save_pretrained(tmp_path / "saved")
    saved: dict[str, torch.Tensor] = {}
    for shard in (tmp_path / "saved").glob("*.safetensors"):
        saved.update(load_file(shard))
    assert sorted(saved) == sorted(weights)
    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert (
        config["model_type"] == "mplug_owl2"
        and config["visual_config"]["visual_abstractor"]["num_learnable_queries"] == 8
    )
    for name in SIDE_FILES[2:]:
        shutil.copy(FIXTURE / name, tmp_path / "saved" / name)
    reloaded = load_onealign_backbone(tmp_path / "saved").model
    torch.testing.assert_close(_image0_quality_logits(reloaded), _image0_quality_logits(model))


def test_config_defaults_are_the_real_model() -> None:
    config = MPLUGOwl2Config()
    vision, abstractor = config.vision_settings(), config.abstractor_settings()
    assert (config.hidden_size, config.num_hidden_layers, config.vocab_size) == (4096, 32, 32000)
    assert (vision.hidden_size, vision.num_hidden_layers, vision.image_size, vision.patch_size) == (1024, 24, 448, 14)
    assert (abstractor.num_learnable_queries, abstractor.num_hidden_layers, abstractor.intermediate_size) == (
        64,
        6,
        2816,
    )
    assert abstractor.grid_size == 32 and config.num_visual_tokens_per_image == 65
    # A file written by the reference config class may pin flash attention; it is not honoured.
    assert MPLUGOwl2Config(_attn_implementation="flash_attention_2")._attn_implementation != "flash_attention_2"


def test_unknown_dtype_and_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown dtype"):
        load_onealign_backbone(FIXTURE, dtype="int8")
    with pytest.raises(InputError):
        load_onealign_backbone(tmp_path / "nothing-here")


def test_stale_rotary_frequencies_are_ignored(tmp_path: Path, weights: dict[str, torch.Tensor]) -> None:
    # Files written by transformers 4.x may hold the rotary inv_freq buffers; they are recomputed.
    extra = dict(weights)
    extra["model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.ones(8)
    model = MPLUGOwl2LlamaForCausalLM.from_pretrained(_write_safetensors(tmp_path / "rope", extra))
    np.testing.assert_allclose(
        _image0_quality_logits(model).numpy(), IMG0["quality"]["level_logits"], atol=1e-4, rtol=0
    )


def test_lora_on_the_reference_targets() -> None:
    # The reference LoRA recipe: every LLM q_proj and the visual branch of v_proj.
    from peft import LoraConfig, get_peft_model

    from toolkit.models.base import TrainingExample

    bb = load_onealign_backbone(FIXTURE)
    cfg = LoraConfig(
        r=4,
        lora_alpha=8,
        init_lora_weights=False,
        target_modules=r".*layers\.\d+\.self_attn\.(q_proj|v_proj\.multiway\.1)",
    )
    bb.model = get_peft_model(bb.model, cfg)
    trainable = [n for n, p in bb.model.named_parameters() if p.requires_grad]
    assert len(trainable) == 8 and all(("q_proj" in n or "v_proj.multiway.1" in n) and "lora_" in n for n in trainable)

    with Image.open(FIXTURE / IMG0["file"]) as img:
        frames = [img.convert("RGB")]
    example = TrainingExample(
        frames=frames,
        question="How would you rate the quality of this image?\n<|image|>",
        answer="The quality of the image is good.",
    )
    bb.model.train()
    batch = bb.training_batch([example])
    bb.model(**batch, use_cache=False).loss.backward()
    assert all(p.grad is not None and bool(p.grad.any()) for n, p in bb.model.named_parameters() if p.requires_grad)
    bb.model.eval()
    adapted = bb.level_logits(bb.scoring_batch([frames], "quality", "image"))
    assert float((adapted[0] - torch.tensor(IMG0["quality"]["level_logits"])).abs().max()) > 1e-3
    bb.model = bb.model.merge_and_unload()
    torch.testing.assert_close(
        bb.level_logits(bb.scoring_batch([frames], "quality", "image")), adapted, atol=1e-5, rtol=0
    )
