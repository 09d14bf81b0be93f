"""Which parameters train: LoRA adapters (plus optional fully trained modules) or everything."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from toolkit.errors import InputError
from toolkit.qalign import ONEALIGN_MODEL_TYPE
from toolkit.training.recipes import ONEALIGN_LORA_TARGETS, ONEALIGN_TRAINABLE_MODULES

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

    from toolkit.training.config import TrainConfig

__all__ = [
    "ONEALIGN_LORA_TARGETS",
    "ONEALIGN_TRAINABLE_MODULES",
    "count_parameters",
    "lora_targets",
    "prepare_trainable",
]


def model_type_of(model: torch.nn.Module) -> str | None:
    return getattr(getattr(model, "config", None), "model_type", None)


def lora_targets(model: torch.nn.Module, config: TrainConfig) -> tuple[str | list[str], list[str]]:
    """LoRA target modules and fully trained modules for ``model``.

    Explicit settings are used as given; with the defaults, OneAlign (``mplug_owl2``) gets the
    reference recipe's targets instead of the generic LLaVA-style ones.
    """
    from toolkit.training.config import DEFAULT_LORA_TARGETS

    targets, trainable = config.lora_target_modules, list(config.trainable_modules)
    if model_type_of(model) == ONEALIGN_MODEL_TYPE and targets == DEFAULT_LORA_TARGETS:
        targets = ONEALIGN_LORA_TARGETS
        trainable = trainable or list(ONEALIGN_TRAINABLE_MODULES)
    return targets, trainable


def prepare_trainable(model: torch.nn.Module, config: TrainConfig) -> torch.nn.Module:
    """Wrap ``model`` with LoRA adapters (``mode='lora'``) or unfreeze it (``mode='full'``, less
    any ``frozen_modules``); switch on gradient checkpointing when asked."""
    if config.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    if config.mode == "full":
        for name, p in model.named_parameters():
            p.requires_grad_(not _in_modules(name, config.frozen_modules))
        if not any(p.requires_grad for p in model.parameters()):
            raise InputError(f"frozen_modules {config.frozen_modules!r} leave nothing to train")
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


def enable_gradient_checkpointing(model: torch.nn.Module) -> None:
    """Recompute each layer's activations in the backward pass instead of keeping them.

    The non-reentrant variant needs no input that requires grad, so it also works when the
    embeddings are frozen (LoRA); the KV cache is useless in training and conflicts with it.
    """
    if not getattr(model, "supports_gradient_checkpointing", False):
        raise InputError(f"{type(model).__name__} does not support gradient checkpointing")
    # supports_gradient_checkpointing is a transformers model's flag: only such models get here.
    pretrained = cast("PreTrainedModel", model)
    kwargs = {"use_reentrant": False}
    if hasattr(pretrained, "activation_checkpointing_enable"):  # the name since transformers 5
        pretrained.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        pretrained.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    for config in (getattr(model, "config", None), getattr(getattr(model, "config", None), "text_config", None)):
        if config is not None:
            config.use_cache = False


def _in_modules(param_name: str, modules: list[str]) -> bool:
    """True when a dotted component path of ``param_name`` is one of ``modules``
    (``"vision_tower"`` matches ``model.vision_tower.encoder...``; ``"model.vision_tower"`` too)."""
    parts = param_name.split(".")
    prefixes = {".".join(parts[i:j]) for i in range(len(parts)) for j in range(i + 1, len(parts))}
    return any(m in prefixes for m in modules)


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts (the full sizes also when ZeRO-3 has partitioned them)."""

    def size(p: torch.nn.Parameter) -> int:
        return int(getattr(p, "ds_numel", 0) or p.numel())

    trainable = sum(size(p) for p in model.parameters() if p.requires_grad)
    total = sum(size(p) for p in model.parameters())
    return trainable, total
