"""Speed switches of a loaded backbone: the attention kernels and ``torch.compile`` of the image path.

Both leave the numbers as they are (within float rounding), so they are not part of what an output
file records. ``attention``: ``"sdpa"`` (PyTorch's fused scaled-dot-product attention, the default
where the model supports it), ``"eager"`` (plain matmul + softmax, what the reference code ran) or a
transformers kernel such as ``"flash_attention_2"`` where its package and a GPU are there.

``compile_mode`` compiles the part of the model whose shapes are fixed for still images: for
OneAlign the ViT and the visual abstractor ((N, 3, 448, 448) pixels -> (N, 65, hidden) tokens),
for LLaVA-style models the vision tower and its projector. The language model is left alone: its
modality routing reads token counts on the host, which would break a graph at every layer.
``"auto"`` is ``"reduce-overhead"`` (CUDA graphs, one per batch size) on a GPU and ``"default"``
elsewhere. Compiling costs seconds to minutes on the first batch of each batch size (see
``warmup``); where compilation is not possible (no Dynamo on this platform, no C++ compiler for a
CPU build, an operator it cannot trace) the module runs eagerly and the report says why.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from torch import nn

from toolkit.errors import InputError
from toolkit.models.base import QAlignBackbone

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

CompileMode = Literal["off", "auto", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]
COMPILE_MODES: tuple[str, ...] = (
    "off",
    "auto",
    "default",
    "reduce-overhead",
    "max-autotune",
    "max-autotune-no-cudagraphs",
)
ATTENTION_CHOICES: tuple[str, ...] = ("sdpa", "eager", "flash_attention_2", "flash_attention_3", "flex_attention")


def check_speed_names(attention: str | None, compile_mode: str) -> None:
    """Refuse an unknown attention or compile mode in one line (before any model is loaded)."""
    if attention is not None and attention not in ATTENTION_CHOICES:
        raise InputError(f"unknown attention {attention!r}; use one of {', '.join(ATTENTION_CHOICES)}")
    if compile_mode not in COMPILE_MODES:
        raise InputError(f"unknown compile mode {compile_mode!r}; use one of {', '.join(COMPILE_MODES)}")


@dataclass
class SpeedReport:
    """What :func:`apply_speed_options` did to a backbone."""

    attention: str  # the attention implementation now in use
    compile_mode: str  # "off" or the torch.compile mode in use
    compiled: list[str] = field(default_factory=list)  # names of the compiled modules
    notes: list[str] = field(default_factory=list)  # why something asked for was not done
    warmup_s: float | None = None  # seconds of the warm-up forward (compilation included)

    def summary(self) -> str:
        parts = [f"attention {self.attention}", f"compile {self.compile_mode}"]
        if self.compiled:
            parts.append("compiled " + ", ".join(self.compiled))
        if self.warmup_s is not None:
            parts.append(f"warm-up {self.warmup_s:.1f} s")
        return "; ".join(parts + self.notes)


def image_path_modules(backbone: QAlignBackbone) -> dict[str, nn.Module]:
    """The modules that see only fixed-shape inputs when still images are scored, by name."""
    # The first module holding the parts, wherever wrappers (PEFT, the causal-LM head) put it.
    inner = next(
        (m for m in backbone.model.modules() if hasattr(m, "visual_abstractor") or hasattr(m, "vision_tower")), None
    )
    if inner is None:
        return {}
    names: tuple[str, ...] = ("vision_model", "visual_abstractor")  # OneAlign
    if not all(hasattr(inner, n) for n in names):
        if getattr(backbone, "native_video", False):
            return {}  # videos as videos: the number of patches changes with the clip
        names = tuple(n for n in ("vision_tower", "multi_modal_projector") if hasattr(inner, n))
    found = {n: getattr(inner, n) for n in names}
    return found if found and all(isinstance(m, nn.Module) for m in found.values()) else {}


def resolve_compile_mode(mode: str, device: torch.device) -> str:
    """The torch.compile mode for ``mode`` on ``device`` (``"auto"`` resolved, names checked)."""
    if mode not in COMPILE_MODES:
        raise InputError(f"unknown compile mode {mode!r}; use one of {', '.join(COMPILE_MODES)}")
    if mode == "auto":
        return "reduce-overhead" if device.type == "cuda" else "default"
    return mode


def compile_unavailable(device: torch.device, backend: str = "inductor") -> str | None:
    """Why ``torch.compile`` cannot work here, or None when it can."""
    import torch

    try:
        import torch._dynamo as dynamo
    except Exception as exc:  # a stripped or exotic build
        return f"torch.compile unavailable ({type(exc).__name__}: {exc})"
    if not dynamo.is_dynamo_supported():
        return f"torch.compile is not supported on this platform (torch {torch.__version__})"
    if backend == "inductor" and device.type == "cpu" and not (shutil.which("g++") or shutil.which("clang++")):
        return "torch.compile on a CPU needs a C++ compiler (g++ or clang++), none found"
    return None


def set_attention(backbone: QAlignBackbone, attention: str) -> str:
    """Switch ``backbone``'s model to ``attention``; ``"sdpa"`` falls back to eager where the model
    has no SDPA path. Returns the implementation in use."""
    if attention not in ATTENTION_CHOICES:
        raise InputError(f"unknown attention {attention!r}; use one of {', '.join(ATTENTION_CHOICES)}")
    net: Any = backbone.model  # a transformers PreTrainedModel (or a PEFT wrapper forwarding to one)
    if attention == "sdpa" and not getattr(net, "_supports_sdpa", False):
        attention = "eager"
    try:
        net.set_attn_implementation(attention)
    except (ImportError, ValueError) as exc:  # flash-attn not installed, not on this device, ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"attention {attention!r} cannot be used here: {first}") from None
    return str(net.config._attn_implementation)


def apply_speed_options(
    backbone: QAlignBackbone,
    attention: str | None = None,
    compile_mode: str = "off",
    backend: str = "inductor",
    warmup: int | None = None,
) -> SpeedReport:
    """Choose the attention kernels and compile the fixed-shape image path of ``backbone`` in place.

    ``attention=None`` keeps the implementation the model was loaded with. ``warmup`` runs the
    image path once on that many blank images, so the compilation happens now and not on the first
    batch (give the scoring batch size: each batch size compiles its own graph). ``backend`` is
    the torch.compile backend (``"inductor"`` generates kernels; ``"aot_eager"`` and ``"eager"`` only
    trace, for checks).
    """
    import torch

    device = backbone.device
    if attention is not None:
        in_use = set_attention(backbone, attention)
    else:
        in_use = str(getattr(getattr(backbone.model, "config", None), "_attn_implementation", "unknown"))
    mode = resolve_compile_mode(compile_mode, device)
    report = SpeedReport(in_use, "off")
    if attention is not None and in_use != attention:
        report.notes.append(f"{attention} not supported by this model, {in_use} used")
    if mode == "off":
        return report
    modules = image_path_modules(backbone)
    if not modules:
        report.notes.append("compile skipped: no fixed-shape image path known for this model")
        return report
    why = compile_unavailable(device, backend)
    if why is not None:
        report.notes.append(f"compile skipped: {why}")
        return report
    if mode in ("reduce-overhead", "max-autotune") and device.type != "cuda":
        # CUDA graphs exist on CUDA devices only; the same kernels without them elsewhere.
        mode = "default" if mode == "reduce-overhead" else "max-autotune-no-cudagraphs"
    options: dict[str, Any] = {"backend": backend, "dynamic": False, "fullgraph": False}
    if backend == "inductor":
        options["mode"] = mode
    for name, module in modules.items():
        module._compiled_call_impl = _with_eager_fallback(
            module, torch.compile(module._call_impl, **options), name, report
        )
        report.compiled.append(name)
    report.compile_mode = mode
    if warmup:
        started = time.perf_counter()
        warm_image_path(backbone, warmup)
        report.warmup_s = time.perf_counter() - started
    return report


def warm_image_path(backbone: QAlignBackbone, batch: int) -> None:
    """One forward of the image path on ``batch`` blank images of the model's input size."""
    import torch

    size = _image_size(backbone)
    modules = image_path_modules(backbone)
    if size is None or not modules:
        return
    first = next(iter(modules.values()))
    weight = next(first.parameters())
    pixels = torch.zeros(batch, 3, size, size, device=weight.device, dtype=weight.dtype)
    with torch.inference_mode():
        if "visual_abstractor" in modules:
            modules["visual_abstractor"](modules["vision_model"](pixels))
        else:
            modules["vision_tower"](pixels)
    if weight.device.type == "cuda":
        torch.cuda.synchronize(weight.device)


def _image_size(backbone: QAlignBackbone) -> int | None:
    processor = getattr(backbone, "processor", None)
    settings = getattr(processor, "image_settings", None)  # OneAlign
    if settings is not None:
        return int(settings.crop_height)
    config = getattr(getattr(backbone.model, "config", None), "vision_config", None)
    size = getattr(config, "image_size", None)
    return int(size) if size else None


def _with_eager_fallback(module: nn.Module, compiled: Callable, name: str, report: SpeedReport) -> Callable:
    """``compiled``, or the eager module from the first call on which compiling fails.

    A failing compiled call is repeated eagerly: when that works the failure was the compiler's
    (no compiler, an operator it cannot lower) and the module stays eager from then on; when it
    fails too, the input was bad and the eager error is raised as it would be without compile.
    """

    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return compiled(*args, **kwargs)
        except Exception as exc:
            out = module._call_impl(*args, **kwargs)
            module._compiled_call_impl = None
            note = f"compile of {name} failed, running eagerly ({_root_cause(exc)})"
            report.notes.append(note)
            if name in report.compiled:
                report.compiled.remove(name)
            log.warning(note)
            return out

    return call


def _root_cause(exc: BaseException) -> str:
    """The innermost cause of a compiler error in one line (Dynamo wraps it in several layers)."""
    while True:
        inner = getattr(exc, "inner_exception", None) or exc.__cause__
        if not isinstance(inner, BaseException):
            break
        exc = inner
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:200] if text else ''}"


def uncompile(backbone: QAlignBackbone) -> None:
    """Undo :func:`apply_speed_options`'s compilation (the attention choice stays)."""
    for module in image_path_modules(backbone).values():
        module._compiled_call_impl = None


def load_fast_backbone(
    model: str,
    adapter: str | None = None,
    dtype: str = "float32",
    device: str = "cpu",
    attention: str | None = "sdpa",
    compile_mode: str = "off",
    warmup: int | None = None,
) -> tuple[QAlignBackbone, SpeedReport]:
    """:func:`toolkit.models.loading.load_backbone` followed by :func:`apply_speed_options`."""
    from toolkit.models.loading import load_backbone

    backbone = load_backbone(model, adapter, dtype, device)
    return backbone, apply_speed_options(backbone, attention, compile_mode, warmup=warmup)


__all__ = [
    "ATTENTION_CHOICES",
    "COMPILE_MODES",
    "check_speed_names",
    "CompileMode",
    "SpeedReport",
    "apply_speed_options",
    "compile_unavailable",
    "image_path_modules",
    "load_fast_backbone",
    "resolve_compile_mode",
    "set_attention",
    "uncompile",
    "warm_image_path",
]
