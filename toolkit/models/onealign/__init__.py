"""Native OneAlign / Q-Align (mPLUG-Owl2) for transformers 5.

Importing this package registers the ``mplug_owl2`` model type with ``AutoConfig`` and
``AutoModelForCausalLM``, so the released checkpoint (whose ``config.json`` points at remote
code) loads with the Auto classes and no ``trust_remote_code``.

Memory for ``q-future/one-align`` (8.2 B parameters: LLaMA-2-7B with a second, visual k/v
branch, a ViT-L/14 and the abstractor): about 33 GB of weights in float32, 16.5 GB in bfloat16
or float16, plus activations (scoring 16 images at once peaks at about 17 GB in bfloat16).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from transformers import AutoConfig, AutoModelForCausalLM

from toolkit.errors import InputError
from toolkit.models.dtypes import canonical_dtype
from toolkit.models.onealign.backbone import OneAlignBackbone
from toolkit.models.onealign.configuration import MPLUGOwl2Config
from toolkit.models.onealign.modeling import CheckpointMismatchError, MPLUGOwl2LlamaForCausalLM
from toolkit.models.onealign.processing import OneAlignProcessor
from toolkit.qalign import ONEALIGN_MODEL_TYPE

if TYPE_CHECKING:
    import torch

AutoConfig.register(ONEALIGN_MODEL_TYPE, MPLUGOwl2Config, exist_ok=True)
AutoModelForCausalLM.register(MPLUGOwl2Config, MPLUGOwl2LlamaForCausalLM, exist_ok=True)


def load_onealign_backbone(
    path: str | os.PathLike[str],
    dtype: str | torch.dtype = "float32",
    device: str | torch.device = "cpu",
    **from_pretrained_kwargs: Any,
) -> OneAlignBackbone:
    """Load a OneAlign checkpoint (a folder or a hub id such as ``"q-future/one-align"``).

    ``device`` is a torch device (the weights are loaded straight onto it) or ``"auto"`` to
    let accelerate spread the layers over the available GPUs. Extra keyword arguments go to
    ``from_pretrained`` (``revision``, ``attn_implementation``, ``strict=False``, ...).
    The model is returned in evaluation mode.
    """
    import torch

    if isinstance(dtype, str):
        dtype = getattr(torch, canonical_dtype(dtype))
    device_map: Any = "auto" if str(device) == "auto" else {"": str(torch.device(device))}
    hub_kwargs = {
        k: from_pretrained_kwargs[k]
        for k in ("revision", "token", "cache_dir", "local_files_only")
        if k in from_pretrained_kwargs
    }
    try:
        model = MPLUGOwl2LlamaForCausalLM.from_pretrained(
            str(path), dtype=dtype, device_map=device_map, **from_pretrained_kwargs
        )
    except OSError as exc:
        raise InputError(f"cannot load the OneAlign checkpoint {path}: {exc}") from None
    processor = OneAlignProcessor.from_pretrained(path, **hub_kwargs)
    model.eval()
    return OneAlignBackbone(model, processor)


__all__ = [
    "CheckpointMismatchError",
    "MPLUGOwl2Config",
    "MPLUGOwl2LlamaForCausalLM",
    "OneAlignBackbone",
    "OneAlignProcessor",
    "load_onealign_backbone",
]
