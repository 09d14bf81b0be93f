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
    Any Hugging Face vision-language model: LoRA r 64, alpha 128 on the attention projections of
    the language model, the vision-language projector trained in full, the vision encoder frozen;
    lr 2e-4, 3 epochs. Where the parts live comes from the family table
    (:mod:`toolkit.models.families`); a model outside it gets the generic LLaVA/Idefics/Qwen names
    the recipe records.
``hf-full``
    Any model, full fine-tuning with the vision encoder frozen (small rating sets overfit a
    trainable vision encoder quickly): lr 2e-5, cosine, warmup 3 %, 2 epochs.
``qwen-vl-lora`` / ``qwen-vl-full``, ``smolvlm-lora`` / ``smolvlm-full``, ``internvl-lora`` /
``internvl-full``, ``llava-ov-lora`` / ``llava-ov-full``, ``gemma3-lora``
    The settings of each family's own fine-tuning scripts (sources in ``configs/README.md``),
    with the vision encoder frozen and the projector trained in every one of them.

Module settings may name parts of the model through the family table instead of by module name:
``@lm-attention`` and ``@lm-attention-mlp`` (LoRA targets: the language model's attention
projections, and its MLP too), ``@projector`` and ``@vision``.
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
(their vision towers also have ``q_proj``/``v_proj``, hence the anchor on the language model);
``hf-lora`` names them so; for a model of the family table they stand for the family's own
language-model attention (:data:`LM_ATTENTION`)."""

HF_LORA_MLP_TARGETS = r".*(language_model|text_model).*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"

HF_PROJECTOR_MODULES = ["multi_modal_projector", "connector", "merger"]
HF_VISION_TOWERS = ["vision_tower", "vision_model"]
"""The generic projector and vision-tower names of ``hf-lora`` / ``hf-full``; for a model of the
family table they stand for the family's projector and vision encoder (:data:`PROJECTOR`, :data:`VISION`),
so that Qwen's merger inside ``visual`` trains and its vision blocks stay frozen."""

LM_ATTENTION = "@lm-attention"
"""LoRA targets: the attention projections of the language model, as the family table places them."""
LM_ATTENTION_MLP = "@lm-attention-mlp"
"""LoRA targets: the attention and MLP projections of the language model."""
PROJECTOR = "@projector"
"""Trained in full beside LoRA: the family's vision-language projector (merger, connector)."""
VISION = "@vision"
"""Kept frozen in full mode: the family's vision encoder (its projector excepted)."""

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
    # Qwen2-VL, Qwen2.5-VL, Qwen3-VL, Qwen3.5: QwenLM qwen-vl-finetune (train_qwen.py's LoRA,
    # the README's launch script and TRL LoRA example).
    "qwen-vl-lora": {
        "mode": "lora",
        "lora_r": 64,
        "lora_alpha": 128,
        "lora_dropout": 0.05,
        "lora_target_modules": LM_ATTENTION,
        "trainable_modules": [PROJECTOR],
        "lr": 2e-5,
        "epochs": 3.0,
        **_SCHEDULE,
        "weight_decay": 0.01,
    },
    "qwen-vl-full": {
        "mode": "full",
        "frozen_modules": [VISION],
        "lr": 1e-6,
        "epochs": 3.0,
        **_SCHEDULE,
        "weight_decay": 0.01,
    },
    # SmolVLM2 and Idefics3: huggingface/smollm finetuning/Smol_VLM_FT.ipynb.
    "smolvlm-lora": {
        "mode": "lora",
        "lora_r": 8,
        "lora_alpha": 8,
        "lora_dropout": 0.1,
        "lora_target_modules": LM_ATTENTION_MLP,
        "trainable_modules": [PROJECTOR],
        "lr": 1e-4,
        "epochs": 1.0,
        **_SCHEDULE,
        "weight_decay": 0.01,
    },
    "smolvlm-full": {
        "mode": "full",
        "frozen_modules": [VISION],
        "lr": 1e-4,
        "epochs": 1.0,
        **_SCHEDULE,
        "weight_decay": 0.01,
    },
    # InternVL: OpenGVLab/InternVL internvl_chat 2nd_finetune scripts (use_llm_lora 16 -> alpha 32).
    "internvl-lora": {
        "mode": "lora",
        "lora_r": 16,
        "lora_alpha": 32,
        "lora_dropout": 0.05,
        "lora_target_modules": LM_ATTENTION_MLP,
        "trainable_modules": [PROJECTOR],
        "lr": 4e-5,
        "epochs": 1.0,
        **_SCHEDULE,
        "weight_decay": 0.05,
    },
    "internvl-full": {
        "mode": "full",
        "frozen_modules": [VISION],
        "lr": 2e-5,
        "epochs": 1.0,
        **_SCHEDULE,
        "weight_decay": 0.05,
    },
    # LLaVA-OneVision: LLaVA-NeXT scripts/train/finetune_ov.sh; LoRA as LLaVA-1.5's finetune_lora.sh.
    "llava-ov-lora": {
        "mode": "lora",
        "lora_r": 128,
        "lora_alpha": 256,
        "lora_dropout": 0.05,
        "lora_target_modules": LM_ATTENTION_MLP,
        "trainable_modules": [PROJECTOR],
        "lr": 2e-4,
        "epochs": 1.0,
        **_SCHEDULE,
    },
    "llava-ov-full": {
        "mode": "full",
        "frozen_modules": [VISION],
        "lr": 1e-5,
        "epochs": 1.0,
        **_SCHEDULE,
    },
    # Gemma 3: Google's "Fine-tune Gemma for vision tasks using Hugging Face Transformers and QLoRA".
    "gemma3-lora": {
        "mode": "lora",
        "lora_r": 16,
        "lora_alpha": 16,
        "lora_dropout": 0.05,
        "lora_target_modules": LM_ATTENTION_MLP,
        "trainable_modules": [PROJECTOR],
        "lr": 2e-4,
        "epochs": 1.0,
        "max_grad_norm": 0.3,
        **_SCHEDULE,
    },
}

RECIPE_FAMILIES: dict[str, tuple[str, ...]] = {
    "qwen-vl-lora": ("qwen3_5", "qwen3_vl", "qwen2_5_vl", "qwen2_vl"),
    "qwen-vl-full": ("qwen3_5", "qwen3_vl", "qwen2_5_vl", "qwen2_vl"),
    "smolvlm-lora": ("smolvlm", "idefics3"),
    "smolvlm-full": ("smolvlm", "idefics3"),
    "internvl-lora": ("internvl",),
    "internvl-full": ("internvl",),
    "llava-ov-lora": ("llava_onevision",),
    "llava-ov-full": ("llava_onevision",),
    "gemma3-lora": ("gemma3",),
}
"""The families (:data:`toolkit.models.families.FAMILIES` names) a family recipe is written for."""


def recipe_values(name: str) -> dict[str, Any]:
    """A fresh copy of the settings of recipe ``name``."""
    if name not in RECIPES:
        raise InputError(f"unknown recipe {name!r}; available: {', '.join(RECIPES)}")
    return copy.deepcopy(RECIPES[name])


def check_recipe_fits(name: str | None, model_type: str | None) -> None:
    """Refuse a OneAlign recipe on another architecture, a generic one on OneAlign and a family's
    recipe on another family: their module names and settings do not carry over (the OneAlign
    targets would also hit a LLaVA vision tower)."""
    if name is None:
        return
    is_onealign = model_type == ONEALIGN_MODEL_TYPE
    if name.startswith("onealign") and not is_onealign:
        raise InputError(
            f"recipe {name!r} is for OneAlign ({ONEALIGN_MODEL_TYPE}) checkpoints, not {model_type!r}; use "
            f"{name.replace('onealign', 'hf')!r}"
        )
    if not name.startswith("onealign") and is_onealign:
        raise InputError(
            f"recipe {name!r} is for generic vision-language models; "
            f"use {'onealign-full' if name.endswith('full') else 'onealign-lora'!r} for OneAlign"
        )
    if name in RECIPE_FAMILIES:
        from toolkit.models.families import family_of

        family = family_of(model_type)
        if family is None or family.name not in RECIPE_FAMILIES[name]:
            fits = f"{family.lora_recipe!r} or {family.full_recipe!r}" if family else "'hf-lora' or 'hf-full'"
            raise InputError(
                f"recipe {name!r} is for {', '.join(RECIPE_FAMILIES[name])} models, not {model_type!r}; use {fits}"
            )
