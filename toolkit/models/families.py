"""The vision-language families the toolkit drives as Q-Align backbones, in one table.

Each entry says where a family's parts live in its transformers model (module paths as
``named_parameters`` spells them, without a leading ``model.``), which of its modules get LoRA
adapters, which backbone class wraps it and whether the family reads videos natively. The
training recipes resolve their ``@vision``, ``@projector`` and ``@lm-*`` placeholders through
this table, so one recipe name fits every family. Adding a family is one entry here plus its
tiny build in :mod:`toolkit.models.tiny_families`.

The processor helpers here load a family's processor without torchvision: transformers builds a
video processor for every family that has one, and video processors need torchvision even when
only still images (or frames given as images) are processed.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolkit.errors import InputError

if TYPE_CHECKING:
    from toolkit.models.hf import HFVisionLanguageBackbone

GENERIC_BACKBONE = "toolkit.models.hf.HFVisionLanguageBackbone"

ATTENTION = r"self_attn\.(q_proj|k_proj|v_proj|o_proj)"
"""The attention projections of a LLaMA-style decoder layer."""

MLP = r"mlp\.(gate_proj|up_proj|down_proj)"
"""The gated MLP projections of a LLaMA-style decoder layer."""

VLM_EXTRA_HINT = "pip install 'qalign-toolkit[vlm]'"


@dataclass(frozen=True)
class Family:
    """Where one vision-language family keeps its parts, and how it is fine-tuned."""

    name: str
    model_types: tuple[str, ...]
    vision: tuple[str, ...]  # the vision encoder, projector excluded (frozen in every recipe)
    projector: tuple[str, ...]  # vision -> language projector / merger (trained in full)
    language_model: str  # the decoder whose attention gets LoRA
    attention: str = ATTENTION  # regex of the token-mixing projections of one decoder layer
    mlp: str = MLP
    backbone: str = GENERIC_BACKBONE  # dotted path of the backbone class, imported when used
    native_video: bool = False  # the family reads videos as videos; its backbone class builds those inputs
    lora_recipe: str = "hf-lora"
    full_recipe: str = "hf-full"
    # Bare parameters outside those modules (PEFT trains modules, not parameters): full
    # fine-tuning trains them, LoRA leaves them as they are.
    loose_parameters: tuple[str, ...] = ()

    def lora_targets(self, mlp: bool = False, projections: str | None = None) -> str:
        """A regex (PEFT ``target_modules``) over the decoder layers of the language model only.

        ``projections`` narrows the attention projections (``"q_proj|v_proj"``)."""
        attention = self.attention
        if projections is not None:
            attention = rf"self_attn\.({projections})"
        inner = f"{attention}|{self.mlp}" if mlp else attention
        return rf"(?:.*\.)?{re.escape(self.language_model)}\.layers\.\d+\.(?:{inner})"


_QWEN_LM = "language_model"

FAMILIES: tuple[Family, ...] = (
    Family(
        name="qwen3_5",
        model_types=("qwen3_5",),
        vision=("visual.patch_embed", "visual.pos_embed", "visual.blocks"),
        projector=("visual.merger",),
        language_model=_QWEN_LM,
        # Three of every four layers are Gated DeltaNet (linear attention): both token mixers.
        attention=r"(?:self_attn\.(q_proj|k_proj|v_proj|o_proj)|linear_attn\.(in_proj_qkv|in_proj_z|out_proj))",
        native_video=True,
        backbone="toolkit.models.qwen_video.QwenVLBackbone",
        lora_recipe="qwen-vl-lora",
        full_recipe="qwen-vl-full",
    ),
    Family(
        name="qwen3_vl",
        model_types=("qwen3_vl",),
        vision=("visual.patch_embed", "visual.pos_embed", "visual.blocks"),
        # DeepStack: one extra merger per tapped vision layer feeds early decoder layers.
        projector=("visual.merger", "visual.deepstack_merger_list"),
        language_model=_QWEN_LM,
        native_video=True,
        backbone="toolkit.models.qwen_video.QwenVLBackbone",
        lora_recipe="qwen-vl-lora",
        full_recipe="qwen-vl-full",
    ),
    Family(
        name="qwen2_5_vl",
        model_types=("qwen2_5_vl",),
        vision=("visual.patch_embed", "visual.blocks"),
        projector=("visual.merger",),
        language_model=_QWEN_LM,
        native_video=True,
        backbone="toolkit.models.qwen_video.QwenVLBackbone",
        lora_recipe="qwen-vl-lora",
        full_recipe="qwen-vl-full",
    ),
    Family(
        name="qwen2_vl",
        model_types=("qwen2_vl",),
        vision=("visual.patch_embed", "visual.blocks"),
        projector=("visual.merger",),
        language_model=_QWEN_LM,
        native_video=True,
        backbone="toolkit.models.qwen_video.QwenVLBackbone",
        lora_recipe="qwen-vl-lora",
        full_recipe="qwen-vl-full",
    ),
    Family(
        name="smolvlm",
        model_types=("smolvlm",),
        vision=("vision_model",),
        projector=("connector",),
        language_model="text_model",
        native_video=True,
        backbone="toolkit.models.family_video.SmolVLMBackbone",
        lora_recipe="smolvlm-lora",
        full_recipe="smolvlm-full",
    ),
    Family(
        name="idefics3",
        model_types=("idefics3",),
        vision=("vision_model",),
        projector=("connector",),
        language_model="text_model",
        lora_recipe="smolvlm-lora",
        full_recipe="smolvlm-full",
    ),
    Family(
        name="internvl",
        model_types=("internvl",),
        vision=("vision_tower",),
        projector=("multi_modal_projector",),
        language_model="language_model",
        native_video=True,
        backbone="toolkit.models.family_video.InternVLBackbone",
        lora_recipe="internvl-lora",
        full_recipe="internvl-full",
    ),
    Family(
        name="llava_onevision",
        model_types=("llava_onevision",),
        vision=("vision_tower",),
        projector=("multi_modal_projector",),
        loose_parameters=("image_newline",),  # the learned row separator of the anyres grid
        language_model="language_model",
        native_video=True,
        backbone="toolkit.models.family_video.LlavaOnevisionBackbone",
        lora_recipe="llava-ov-lora",
        full_recipe="llava-ov-full",
    ),
    Family(
        name="gemma3",
        model_types=("gemma3",),
        vision=("vision_tower",),
        projector=("multi_modal_projector",),
        language_model="language_model",
        lora_recipe="gemma3-lora",
    ),
    Family(
        name="paligemma",
        model_types=("paligemma",),
        vision=("vision_tower",),
        projector=("multi_modal_projector",),
        language_model="language_model",
        backbone="toolkit.models.paligemma.PaliGemmaBackbone",
    ),
    Family(
        name="llava",
        model_types=("llava",),
        vision=("vision_tower",),
        projector=("multi_modal_projector",),
        language_model="language_model",
    ),
)

_BY_MODEL_TYPE = {t: f for f in FAMILIES for t in f.model_types}


def family_of(model_type: str | None) -> Family | None:
    """The family of a ``config.json`` ``model_type``; None for one outside the table."""
    return _BY_MODEL_TYPE.get(model_type or "")


def get_family(name: str) -> Family:
    """The family called ``name`` (a :data:`FAMILIES` entry)."""
    for family in FAMILIES:
        if family.name == name:
            return family
    raise InputError(f"unknown model family {name!r}; known: {', '.join(f.name for f in FAMILIES)}")


def backbone_class(family: Family | None) -> type[HFVisionLanguageBackbone]:
    """The backbone class of ``family`` (the generic one outside the table), imported now."""
    dotted = family.backbone if family is not None else GENERIC_BACKBONE
    module_name, _, cls_name = dotted.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            raise InputError(f"the {family.name if family else ''} backbone {dotted} is not installed") from None
        raise
    cls: type[HFVisionLanguageBackbone] = getattr(module, cls_name)
    return cls


# ------------------------------------------------------------------ processors without torchvision


@functools.cache
def image_only_processor_class(cls: type[Any]) -> type[Any]:
    """``cls`` (a transformers processor class) without its video processor.

    transformers takes a processor's parts from the parameters of its ``__init__``; this subclass
    leaves ``video_processor`` out, so it builds, saves and loads with the image processor and
    tokenizer alone, and the parent's ``__init__`` gets ``video_processor=None`` (images, and
    video frames given as images, need nothing more). The class keeps the parent's name, so
    what it saves loads with the parent (where torchvision is installed) and vice versa.
    """
    from transformers.processing_utils import ProcessorMixin

    parent_init = cls.__init__
    parent = inspect.signature(parent_init)
    names = [
        n
        for n, p in parent.parameters.items()
        if n not in ("self", "video_processor") and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    defaults = {
        n: (None if parent.parameters[n].default is inspect.Parameter.empty else parent.parameters[n].default)
        for n in names
    }
    # transformers reads the parts and settings of a processor from its __init__'s code object
    # (co_varnames), not from a signature: the method has to be a real function with those
    # parameters, hence it is compiled from its parameter list. Names are Python identifiers
    # taken from the parent's own signature.
    params = ", ".join(["self", *(f"{n}=_defaults[{n!r}]" for n in names), "**kwargs"])
    call = ", ".join([*(f"{n}={n}" for n in names), "video_processor=None", "**kwargs"])
    namespace: dict[str, Any] = {"_defaults": defaults, "_parent_init": parent_init}
    exec(f"def __init__({params}):\n    _parent_init(self, {call})\n", namespace)  # noqa: S102
    __init__ = namespace["__init__"]

    def apply_chat_template(self: Any, conversation: Any, chat_template: str | None = None, **kwargs: Any) -> Any:
        # A family's own override (SmolVLM's) only adds video settings, read from the video
        # processor this class does not have: render with the base method.
        return ProcessorMixin.apply_chat_template(self, conversation, chat_template, **kwargs)

    members = {"__init__": __init__, "apply_chat_template": apply_chat_template, "__doc__": cls.__doc__}
    return type(cls.__name__, (cls,), {**members, "__module__": cls.__module__})


def _processor_class_name(path: Path) -> str | None:
    for name in ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json"):
        try:
            data = json.loads((path / name).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get("processor_class"), str):
            return str(data["processor_class"])
    return None


def load_processor(path: Path) -> Any:
    """The checkpoint's processor; without torchvision, its image-only variant
    (:func:`image_only_processor_class`) where the processor class has a video processor."""
    import transformers
    from transformers import AutoProcessor
    from transformers.utils import is_torchvision_available

    name = _processor_class_name(path)
    cls = getattr(transformers, name, None) if name else None
    if cls is not None and "video_processor" in cls.get_attributes() and not is_torchvision_available():
        return image_only_processor_class(cls).from_pretrained(path)
    return AutoProcessor.from_pretrained(path)


_PACKAGE_IN_MESSAGE = re.compile(r"\b(torchvision|num2words|timm|einops|sentencepiece|av|decord|protobuf)\b")


def missing_package_error(exc: ImportError, path: Path) -> InputError:
    """One line naming the package a processor or model needs and how to install it."""
    package = exc.name if isinstance(exc, ModuleNotFoundError) and exc.name else None
    if package is None:
        found = _PACKAGE_IN_MESSAGE.search(str(exc))
        package = found.group(1) if found else None
    if package is None:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return InputError(f"cannot load {path}: a package it needs is missing ({first})")
    package = package.split(".")[0]
    return InputError(
        f"cannot load {path}: it needs the Python package {package!r}; install it with "
        f"{VLM_EXTRA_HINT} (or pip install {package})"
    )
