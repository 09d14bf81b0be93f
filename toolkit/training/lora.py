"""Which parameters train: LoRA adapters (plus optional fully trained modules) or everything."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

from toolkit.errors import InputError
from toolkit.models.families import family_of
from toolkit.qalign import ONEALIGN_MODEL_TYPE
from toolkit.training.recipes import (
    HF_LORA_MLP_TARGETS,
    HF_LORA_TARGETS,
    HF_PROJECTOR_MODULES,
    HF_VISION_TOWERS,
    LM_ATTENTION,
    LM_ATTENTION_MLP,
    ONEALIGN_LORA_TARGETS,
    ONEALIGN_TRAINABLE_MODULES,
    PROJECTOR,
    VISION,
)

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

    from toolkit.training.config import TrainConfig

__all__ = [
    "ONEALIGN_LORA_TARGETS",
    "ONEALIGN_TRAINABLE_MODULES",
    "count_parameters",
    "frozen_modules",
    "lora_targets",
    "prepare_trainable",
]


def model_type_of(model: torch.nn.Module) -> str | None:
    return getattr(getattr(model, "config", None), "model_type", None)


def lora_targets(model: torch.nn.Module, config: TrainConfig) -> tuple[str | list[str], list[str]]:
    """LoRA target modules and fully trained modules for ``model``.

    Explicit module names are used as given. With the defaults, OneAlign (``mplug_owl2``) gets
    the reference recipe's targets; the ``@lm-attention`` / ``@lm-attention-mlp`` / ``@projector``
    placeholders of the recipes name the parts of a model's family
    (:mod:`toolkit.models.families`), and so do hf-lora's generic names and the plain default
    (q_proj and v_proj of the language model) for a model of the table.
    """
    from toolkit.training.config import DEFAULT_LORA_TARGETS

    targets, trainable = config.lora_target_modules, list(config.trainable_modules)
    if model_type_of(model) == ONEALIGN_MODEL_TYPE and targets == DEFAULT_LORA_TARGETS:
        targets = ONEALIGN_LORA_TARGETS
        trainable = trainable or list(ONEALIGN_TRAINABLE_MODULES)
    family = family_of(model_type_of(model))
    if targets in (LM_ATTENTION, HF_LORA_TARGETS):
        targets = family.lora_targets() if family else HF_LORA_TARGETS
    elif targets == LM_ATTENTION_MLP:
        targets = family.lora_targets(mlp=True) if family else HF_LORA_MLP_TARGETS
    elif targets == DEFAULT_LORA_TARGETS and family is not None:
        targets = family.lora_targets(projections="q_proj|v_proj")
    elif isinstance(targets, str) and targets.startswith("@"):
        raise InputError(f"unknown LoRA target placeholder {targets!r}; use {LM_ATTENTION} or {LM_ATTENTION_MLP}")
    if family is not None and trainable == HF_PROJECTOR_MODULES:  # hf-lora's generic names
        trainable = [PROJECTOR]
    trainable = _expand(trainable, PROJECTOR, family.projector if family else HF_PROJECTOR_MODULES)
    return targets, _module_lists_split(model, trainable)


def frozen_modules(model: torch.nn.Module, config: TrainConfig) -> list[str]:
    """``config.frozen_modules`` with ``@vision`` (and hf-full's generic names, for a model of the
    family table) replaced by the family's vision encoder."""
    family = family_of(model_type_of(model))
    frozen = list(config.frozen_modules)
    if family is not None and frozen == HF_VISION_TOWERS:
        frozen = [VISION]
    return _expand(frozen, VISION, family.vision if family else HF_VISION_TOWERS)


def _module_lists_split(model: torch.nn.Module, modules: list[str]) -> list[str]:
    """PEFT trains whole modules beside LoRA but cannot wrap a ``ModuleList`` (Qwen3-VL's
    ``deepstack_merger_list``): such a list stands for its items."""
    import torch

    out: list[str] = []
    for name in modules:
        found = None
        for prefix in ("", "model."):
            try:
                found = model.get_submodule(prefix + name)
                break
            except (AttributeError, TypeError):
                continue
        if isinstance(found, torch.nn.ModuleList):
            out.extend(f"{name}.{i}" for i in range(len(found)))
        else:
            out.append(name)
    return out


def _expand(modules: list[str], placeholder: str, names: Sequence[str]) -> list[str]:
    out: list[str] = []
    for m in modules:
        if m == placeholder:
            out.extend(names)
        elif m.startswith("@"):
            raise InputError(f"unknown module placeholder {m!r}; use {PROJECTOR} (trained) or {VISION} (frozen)")
        else:
            out.append(m)
    return list(dict.fromkeys(out))


def prepare_trainable(model: torch.nn.Module, config: TrainConfig) -> torch.nn.Module:
    """Wrap ``model`` with LoRA adapters (``mode='lora'``) or unfreeze it (``mode='full'``, less
    any ``frozen_modules``); switch on gradient checkpointing when asked."""
    if config.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    if config.mode == "full":
        frozen = frozen_modules(model, config)
        for name, p in model.named_parameters():
            p.requires_grad_(not _in_modules(name, frozen))
        if not any(p.requires_grad for p in model.parameters()):
            raise InputError(f"frozen_modules {frozen!r} leave nothing to train")
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
