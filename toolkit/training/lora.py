"""Which parameters train: LoRA adapters (plus optional fully trained modules) or everything."""

from __future__ import annotations

from typing import TYPE_CHECKING

from toolkit.errors import InputError

if TYPE_CHECKING:
    import torch

    from toolkit.training.config import TrainConfig


def prepare_trainable(model: "torch.nn.Module", config: "TrainConfig") -> "torch.nn.Module":
    """Wrap ``model`` with LoRA adapters (``mode='lora'``) or unfreeze it all (``mode='full'``)."""
    if config.mode == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.lora_target_modules,
        modules_to_save=list(config.trainable_modules) or None,
        bias="none",
    )
    try:
        return get_peft_model(model, lora)
    except ValueError as exc:  # peft's message when no module matches the targets
        raise InputError(f"LoRA targets {config.lora_target_modules!r} match no module of the model: {exc}") from None


def count_parameters(model: "torch.nn.Module") -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total
