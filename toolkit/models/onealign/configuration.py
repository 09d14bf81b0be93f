"""Configuration of mPLUG-Owl2 / OneAlign, compatible with the released ``config.json``.

The released file is a LLaMA config (``model_type: mplug_owl2``) with the LLaMA fields at the top
level and a ``visual_config`` dict holding two nested config dumps, ``visual_model`` (the ViT) and
``visual_abstractor``. It is kept as that plain dict so that a saved config stays readable by the
original remote code; typed views of the two parts are built on demand with
:meth:`MPLUGOwl2Config.vision_settings` and :meth:`MPLUGOwl2Config.abstractor_settings`.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, fields
from typing import Any

from transformers import LlamaConfig

from toolkit.qalign import ONEALIGN_MODEL_TYPE


def _from_known_keys(cls: type, data: dict[str, Any] | None) -> Any:
    # The nested dumps carry every PretrainedConfig field of transformers 4.x (generation
    # settings, label maps, ...); only the architecture fields matter here.
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in (data or {}).items() if k in names and v is not None})


@dataclass(frozen=True)
class MplugOwlVisionConfig:
    """The ViT-L/14 vision tower; defaults are the real OneAlign values (448 px, 1025 tokens)."""

    hidden_size: int = 1024
    intermediate_size: int = 4096
    num_hidden_layers: int = 24
    num_attention_heads: int = 16
    num_channels: int = 3
    image_size: int = 448
    patch_size: int = 14
    layer_norm_eps: float = 1e-6
    attention_dropout: float = 0.0
    initializer_range: float = 0.02
    # Always QuickGELU in the reference code, whatever this says; kept for round-tripping.
    hidden_act: str = "quick_gelu"
    model_type: str = "mplug_owl_vision_model"

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> MplugOwlVisionConfig:
        return _from_known_keys(cls, data)

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class MplugOwlVisualAbstractorConfig:
    """The visual abstractor: learnable queries cross-attending to the ViT tokens."""

    num_learnable_queries: int = 64
    hidden_size: int = 1024
    num_hidden_layers: int = 6
    num_attention_heads: int = 16
    intermediate_size: int = 2816
    attention_probs_dropout_prob: float = 0.0
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-6  # only the MLP's ``ffn_ln`` uses it; the other norms use 1e-5
    encoder_hidden_size: int = 1024
    grid_size: int = 32
    model_type: str = "mplug_owl_visual_abstract"

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> MplugOwlVisualAbstractorConfig:
        return _from_known_keys(cls, data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_visual_config() -> dict[str, dict[str, Any]]:
    """``visual_config`` of the real OneAlign model (the class defaults of the reference code)."""
    return {
        "visual_model": MplugOwlVisionConfig().to_dict(),
        "visual_abstractor": MplugOwlVisualAbstractorConfig().to_dict(),
    }


class MPLUGOwl2Config(LlamaConfig):
    """LLaMA-2 settings plus ``visual_config`` (``{"visual_model": {...}, "visual_abstractor": {...}}``).

    Extra fields of the released file (``image_aspect_ratio``, ``freeze_vision_model``,
    ``tune_visual_abstractor``, ...) are kept as plain attributes and written back on save.
    """

    model_type = ONEALIGN_MODEL_TYPE  # transformers reads the type from this class attribute

    visual_config: dict | None = None

    def __post_init__(self, **kwargs: Any) -> None:
        # The reference config class hard-codes flash attention; a file saved by it may carry
        # that choice, which must not force a kernel that the current machine may lack.
        kwargs.pop("_attn_implementation", None)
        self.visual_config = copy.deepcopy(self.visual_config) if self.visual_config else default_visual_config()
        for key in ("visual_model", "visual_abstractor"):
            if not isinstance(self.visual_config.get(key, {}), dict):
                raise ValueError(f"visual_config[{key!r}] must be a dict, got {type(self.visual_config[key]).__name__}")
        super().__post_init__(**kwargs)

    def _visual_config(self) -> dict[str, Any]:
        if self.visual_config is None:  # ``__post_init__`` always sets it; only a caller's reset leaves None
            raise ValueError("visual_config is unset")
        return self.visual_config

    def vision_settings(self) -> MplugOwlVisionConfig:
        return MplugOwlVisionConfig.from_dict(self._visual_config().get("visual_model"))

    def abstractor_settings(self) -> MplugOwlVisualAbstractorConfig:
        return MplugOwlVisualAbstractorConfig.from_dict(self._visual_config().get("visual_abstractor"))

    @property
    def num_visual_tokens_per_image(self) -> int:
        """Tokens one image (or one video frame) occupies in the LLM: the queries plus the end token."""
        return self.abstractor_settings().num_learnable_queries + 1


__all__ = ["MPLUGOwl2Config", "MplugOwlVisionConfig", "MplugOwlVisualAbstractorConfig", "default_visual_config"]
