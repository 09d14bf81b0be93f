"""Which parameters train: LoRA adapters (plus optional fully trained modules) or everything."""

from __future__ import annotations

from typing import TYPE_CHECKING

from toolkit.errors import InputError

if TYPE_CHECKING:
    import torch

    from toolkit.training.config import TrainConfig


ONEALIGN_LORA_TARGETS = r".*layers\.\d+\.self_attn\.(q_proj|v_proj\.multiway\.1)"
"""The Q-Align LoRA recipe for OneAlign: every LLM ``q_proj`` and the visual branch of ``v_proj``."""

ONEALIGN_TRAINABLE_MODULES = ["visual_abstractor"]
"""Trained in full beside the adapters in that recipe (the vision encoder stays frozen)."""


def lora_targets(model: "torch.nn.Module", config: "TrainConfig") -> tuple[str | list[str], list[str]]:
    """LoRA target modules and fully trained modules for ``model``.

    Explicit settings are used as given; with the defaults, OneAlign (``mplug_owl2``) gets the
    reference recipe's targets instead of the generic LLaVA-style ones.
    """
    from toolkit.training.config import DEFAULT_LORA_TARGETS

    targets, trainable = config.lora_target_modules, list(config.trainable_modules)
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type == "mplug_owl2" and targets == DEFAULT_LORA_TARGETS:
        targets = ONEALIGN_LORA_TARGETS
        trainable = trainable or list(ONEALIGN_TRAINABLE_MODULES)
    return targets, trainable


def prepare_trainable(model: "torch.nn.Module", config: "TrainConfig") -> "torch.nn.Module":
    """Wrap ``model`` with LoRA adapters (``mode='lora'``) or unfreeze it all (``mode='full'``)."""
    if config.mode == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    from peft import LoraConfig, get_peft_model

    targets, trainable = lora_targets(model, config)
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=targets,
        modules_to_save=trainable or None,
        bias="none",
    )
    try:
        return get_peft_model(model, lora)
    except ValueError as exc:  # peft's message when no module matches the targets
        raise InputError(f"LoRA targets {targets!r} match no module of the model: {exc}") from None


def count_parameters(model: "torch.nn.Module") -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total
