"""Named training recipes: the reference settings behind one name (``--recipe onealign-lora``).

A recipe is a set of :class:`~toolkit.training.config.TrainConfig` values. Settings given
explicitly (on the command line, in a config file, or as ``from_dict`` keys) win over it.

``onealign-lora``
    The Q-Align recipe for adapting OneAlign to a new domain: LoRA r 128, alpha 256, dropout
    0.05 on every LLM ``q_proj`` and on the visual branch of ``v_proj`` (``v_proj.multiway.1``),
    the visual abstractor trained in full, the vision encoder frozen; lr 2e-4, 3 epochs, cosine
    schedule with 3 % warmup, no weight decay, bf16 where the GPU has it, gradient checkpointing.
``onealign-full``
    Full fine-tuning of OneAlign as in the Q-Align scripts: everything trainable (vision encoder,
    abstractor, LLM), lr 2e-5, cosine, warmup 3 %, weight decay 0, 2 epochs, bf16, gradient
    checkpointing. At 8 B parameters this needs several GPUs with DeepSpeed ZeRO-3
    (``configs/accelerate_zero3.yaml``).
``hf-lora``
    Generic Hugging Face vision-language models: LoRA r 64, alpha 128 on the attention
    projections of the language model, the vision-language projector trained in full (LLaVA's
    ``multi_modal_projector``, Idefics3/SmolVLM's ``connector``, Qwen2-VL's ``merger``; names
    the model lacks are ignored); lr 2e-4, 3 epochs.
``hf-full``
    Generic models, full fine-tuning with the vision tower frozen (small rating sets overfit a
    trainable vision encoder quickly): lr 2e-5, cosine, warmup 3 %, 2 epochs.
"""

from __future__ import annotations

import copy
from typing import Any

from toolkit.errors import InputError
from toolkit.qalign import ONEALIGN_MODEL_TYPE

ONEALIGN_LORA_TARGETS = r".*layers\.\d+\.self_attn\.(q_proj|v_proj\.multiway\.1)"
"""The Q-Align LoRA recipe for OneAlign: every LLM ``q_proj`` and the visual branch of ``v_proj``."""

ONEALIGN_TRAINABLE_MODULES = ["visual_abstractor"]
"""Trained in full beside the adapters in that recipe (the vision encoder stays frozen)."""

HF_LORA_TARGETS = r".*(language_model|text_model).*\.(q_proj|k_proj|v_proj|o_proj)"
"""Attention projections of the language model of LLaVA-, Qwen-VL- and Idefics-style models
(their vision towers also have ``q_proj``/``v_proj``, hence the anchor on the language model)."""

HF_PROJECTOR_MODULES = ["multi_modal_projector", "connector", "merger"]
HF_VISION_TOWERS = ["vision_tower", "vision_model"]

_SCHEDULE = {"warmup_ratio": 0.03, "weight_decay": 0.0, "dtype": "auto"}

RECIPES: dict[str, dict[str, Any]] = {
    "onealign-lora": {
        "mode": "lora",
        "lora_r": 128,
        "lora_alpha": 256,
        "lora_dropout": 0.05,
        "lora_target_modules": ONEALIGN_LORA_TARGETS,
        "trainable_modules": list(ONEALIGN_TRAINABLE_MODULES),
        "lr": 2e-4,
        "epochs": 3.0,
        "gradient_checkpointing": True,
        **_SCHEDULE,
    },
    "onealign-full": {
        "mode": "full",
        "frozen_modules": [],
        "lr": 2e-5,
        "epochs": 2.0,
        "gradient_checkpointing": True,
        **_SCHEDULE,
    },
    "hf-lora": {
        "mode": "lora",
        "lora_r": 64,
        "lora_alpha": 128,
        "lora_dropout": 0.05,
        "lora_target_modules": HF_LORA_TARGETS,
        "trainable_modules": list(HF_PROJECTOR_MODULES),
        "lr": 2e-4,
        "epochs": 3.0,
        **_SCHEDULE,
    },
    "hf-full": {
        "mode": "full",
        "frozen_modules": list(HF_VISION_TOWERS),
        "lr": 2e-5,
        "epochs": 2.0,
        **_SCHEDULE,
    },
}


def recipe_values(name: str) -> dict[str, Any]:
    """A fresh copy of the settings of recipe ``name``."""
    if name not in RECIPES:
        raise InputError(f"unknown recipe {name!r}; available: {', '.join(RECIPES)}")
    return copy.deepcopy(RECIPES[name])


def check_recipe_fits(name: str | None, model_type: str | None) -> None:
    """Refuse a OneAlign recipe on another architecture and a generic one on OneAlign: their
    module names do not carry over (the OneAlign targets would also hit a LLaVA vision tower)."""
    if name is None:
        return
    is_onealign = model_type == ONEALIGN_MODEL_TYPE
    if name.startswith("onealign") and not is_onealign:
        raise InputError(
            f"recipe {name!r} is for OneAlign ({ONEALIGN_MODEL_TYPE}) checkpoints, not {model_type!r}; use "
            f"{name.replace('onealign', 'hf')!r}"
        )
    if name.startswith("hf") and is_onealign:
        raise InputError(
            f"recipe {name!r} is for generic vision-language models; "
            f"use {name.replace('hf', 'onealign')!r} for OneAlign"
        )
