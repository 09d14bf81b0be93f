"""One entry point that turns a model name or folder (plus an optional LoRA adapter) into a backbone.

``"tiny"`` is the embedded demonstration model; a folder whose ``config.json`` says
``model_type: mplug_owl2`` is OneAlign / Q-Align and goes to the native port; anything else is
loaded as a Hugging Face ``AutoModelForImageTextToText`` checkpoint, wrapped by the backbone class
its family names (:mod:`toolkit.models.families`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from toolkit.errors import InputError
from toolkit.models.base import QAlignBackbone
from toolkit.models.dtypes import AUTO, canonical_dtype
from toolkit.qalign import ONEALIGN_MODEL_TYPE

if TYPE_CHECKING:
    import torch

    from toolkit.models.families import Family


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA, then Apple MPS, then the CPU; an unavailable device is an error."""
    import torch

    if isinstance(device, torch.device):
        return device
    name = str(device).strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise InputError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r} was asked for but CUDA is not available on this machine")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"device {device!r} was asked for but MPS is not available on this machine")
    return dev


def resolve_dtype(dtype: str | torch.dtype = "float32", device: str | torch.device = "cpu") -> torch.dtype:
    """A torch dtype from a name. ``"auto"``: bfloat16 on GPUs that support it, else float32."""
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    name = canonical_dtype(dtype, allow_auto=True)
    if name == AUTO:
        dev = resolve_device(device)
        if dev.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return getattr(torch, name)


VideoInput = Literal["native", "frames"]
"""How a model is given a video: as a video (``native``: temporal patches, video tokens) or as
its frames, one image each (``frames``, which every model reads)."""


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def resolve_model_path(model: str | Path) -> Path:
    """The local folder of a model.

    ``"tiny"`` is built on first use; an existing folder is used as is; a Hugging Face hub id
    such as ``"q-future/one-align"`` that is not a local folder is fetched into (or read from)
    the hub cache.
    """
    if str(model) == "tiny":
        from toolkit.models.tiny import default_model_dir

        return default_model_dir()
    path = Path(model).expanduser()
    if not path.exists() and isinstance(model, str) and _HUB_ID.match(model):
        path = _from_hub(model)
    if not path.exists():
        raise InputError(f"model {str(model)!r} is neither 'tiny', an existing folder nor a hub id (org/name)")
    if not (path / "config.json").is_file():
        raise InputError(f"model folder {path} has no config.json; is it a Hugging Face checkpoint?")
    return path


def _from_hub(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id=repo_id))
    except Exception as exc:  # offline, unknown repository, gated model: one readable line
        raise InputError(
            f"model {repo_id!r} is not a local folder and cannot be fetched from the Hugging Face hub "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from None


def model_type(path: str | Path) -> str:
    """``model_type`` of a checkpoint's ``config.json``."""
    cfg = Path(path) / "config.json"
    try:
        data = json.loads(cfg.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read {cfg}: {exc}") from None
    if not isinstance(data, dict) or not data.get("model_type"):
        raise InputError(f"{cfg} has no model_type")
    return str(data["model_type"])


def load_backbone(
    model: str | Path,
    adapter: str | Path | None = None,
    dtype: str | torch.dtype = "float32",
    device: str | torch.device = "cpu",
    merge: bool = False,
    native_video: bool = False,
) -> QAlignBackbone:
    """Load a Q-Align backbone, in evaluation mode, on ``device``.

    ``adapter`` is a PEFT LoRA folder (as ``qalign train --mode lora`` writes) applied on top of
    the base model; ``merge=True`` folds it into the weights (faster inference, no PEFT wrapper).
    ``native_video``: videos go to the model as videos where its backbone can do that (the Qwen-VL
    models, SmolVLM2, InternVL, LLaVA-OneVision), not as their frames; other models refuse it.
    Score with the mode the model was fine-tuned with.
    """
    path = resolve_model_path(model)
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)

    kind = model_type(path)
    if kind == ONEALIGN_MODEL_TYPE:
        from toolkit.models.onealign import load_onealign_backbone

        backbone: QAlignBackbone = load_onealign_backbone(path, torch_dtype, dev)
    else:
        backbone = _load_hf(path, torch_dtype, dev)
    if native_video:
        if not getattr(backbone, "supports_native_video", False):
            raise InputError(
                f"{kind} models read videos as frames here (native video input: Qwen2-VL, Qwen2.5-VL, "
                "Qwen3-VL, Qwen3.5, SmolVLM2, InternVL, LLaVA-OneVision); leave native video off"
            )
        backbone.native_video = True  # type: ignore[attr-defined]  # a backbone that supports it has it

    if adapter is not None:
        backbone.model = _apply_adapter(backbone.model, Path(adapter).expanduser(), merge)
        backbone.model.to(dev)
    backbone.model.eval()
    return backbone


def native_video_available(model: str | Path) -> bool:
    """Whether ``model`` can be given videos as videos, told from its ``config.json`` without the
    weights: its family reads videos natively (the family table's flag) and the toolkit's backbone
    of that family builds such inputs (the Qwen-VL models, SmolVLM2, InternVL, LLaVA-OneVision;
    other families read frames)."""
    from toolkit.models.families import family_of

    return _native_video_family(family_of(model_type(resolve_model_path(model))))


def _native_video_family(family: Family | None) -> bool:
    from toolkit.models.families import backbone_class

    return family is not None and family.native_video and bool(backbone_class(family).supports_native_video)


def video_input_of(backbone: QAlignBackbone) -> VideoInput:
    """How ``backbone`` gives videos to its model now."""
    return "native" if getattr(backbone, "native_video", False) else "frames"


def set_video_input(backbone: QAlignBackbone, as_frames: bool = False) -> VideoInput:
    """Give videos to ``backbone``'s model as videos wherever it can read them so, or as frames
    with ``as_frames`` (or when it cannot); returns the mode set. Scoring should use the mode the
    model was fine-tuned with."""
    from toolkit.models.families import family_of

    config = getattr(backbone.model, "config", None)
    family = family_of(getattr(config, "model_type", None))
    native = not as_frames and _native_video_family(family) and getattr(backbone, "supports_native_video", False)
    if native or getattr(backbone, "native_video", False):
        backbone.native_video = native  # type: ignore[attr-defined]  # a backbone that supports it has it
        getattr(backbone, "_prompt_cache", {}).clear()  # prompts written for the other mode
    return video_input_of(backbone)


def _load_hf(path: Path, torch_dtype: torch.dtype, dev: torch.device) -> QAlignBackbone:
    from transformers import AutoModelForImageTextToText

    from toolkit.models.families import backbone_class, family_of, load_processor, missing_package_error

    family = family_of(model_type(path))
    try:
        processor = load_processor(path)
        net = AutoModelForImageTextToText.from_pretrained(path, dtype=torch_dtype)
    except ImportError as exc:  # a processor or model that needs an optional package (num2words, ...)
        raise missing_package_error(exc, path) from None
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"cannot load {path} as an image-text-to-text model: {exc}") from None
    # transformers decorates PreTrainedModel.to with functools.wraps(nn.Module.to), which typeshed
    # types as an unbound function expecting the module first.
    return backbone_class(family)(net.to(dev), processor)  # type: ignore[arg-type]


def _apply_adapter(net: torch.nn.Module, adapter: Path, merge: bool) -> torch.nn.Module:
    from peft import PeftModel

    if not (adapter / "adapter_config.json").is_file():
        raise InputError(f"adapter folder {adapter} has no adapter_config.json (expected a PEFT LoRA adapter)")
    peft_model = PeftModel.from_pretrained(net, adapter)
    return peft_model.merge_and_unload() if merge else peft_model
