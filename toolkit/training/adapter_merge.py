"""Folding a LoRA adapter into its base model: one ordinary checkpoint, no PEFT at load time.

The merged folder loads like the base model (``qalign score --model MERGED``), with the
adapter's low-rank updates added to the weights they target and any fully trained modules (the
OneAlign recipe's visual abstractor) replacing the base ones. Merging happens in float32 and
the result is saved in the base model's own dtype unless told otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from toolkit.errors import InputError
from toolkit.files import claim_output_dir, write_output_marker
from toolkit.models.base import SavesPretrained
from toolkit.training.output import RECORD_NAME, copy_auxiliary_files, read_record, replace_dir, staging_dir

MERGE_RECORD = "qalign_merge.json"


@dataclass
class MergeResult:
    output_dir: Path
    base: Path
    adapter: Path
    dtype: str


def merge_adapter(
    adapter: str | os.PathLike[str],
    out: str | os.PathLike[str],
    model: str | os.PathLike[str] | None = None,
    dtype: str | None = None,
    overwrite: bool = False,
) -> MergeResult:
    """Merge the LoRA ``adapter`` into ``model`` and save the result to ``out``.

    ``model`` defaults to the base model recorded by the training run that wrote the adapter.
    ``dtype`` (float32, bfloat16, float16) defaults to the base checkpoint's ``dtype`` /
    ``torch_dtype`` (float32 when it names none). ``out`` may be new, empty, or (with
    ``overwrite``) an earlier toolkit output (:func:`toolkit.files.claim_output_dir`).
    """
    import torch
    import transformers

    from toolkit.models.loading import load_backbone, resolve_dtype, resolve_model_path

    adapter_dir = Path(adapter)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise InputError(f"{adapter_dir} is not a LoRA adapter folder (no adapter_config.json)")
    if model is None:
        if not (adapter_dir / RECORD_NAME).is_file():
            raise InputError(f"no --model given and {adapter_dir} has no {RECORD_NAME} naming its base model")
        model = read_record(adapter_dir)["base_model_path"]
    base = resolve_model_path(str(model))
    target = claim_output_dir(out, overwrite=overwrite, legacy=(MERGE_RECORD,), inputs=(adapter_dir, base))
    save_dtype = resolve_dtype(dtype or _checkpoint_dtype(base))

    backbone = load_backbone(base, adapter=adapter_dir, dtype="float32", device="cpu", merge=True)
    net = backbone.model.to(save_dtype)
    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.utils.logging.disable_progress_bar()
    staged = staging_dir(target)
    try:
        # ``model`` is declared as a plain module (wrappers replace it); merged, it is a transformers model.
        cast(SavesPretrained, net).save_pretrained(staged)
        processor = getattr(backbone, "processor", None)
        if processor is not None and hasattr(processor, "save_pretrained"):
            processor.save_pretrained(staged)
        # Tokenizer and preprocessing files the processor cannot write (OneAlign's) come from the base.
        copy_auxiliary_files(base, staged)
        name = str(save_dtype).removeprefix("torch.")
        (staged / MERGE_RECORD).write_text(
            json.dumps(
                {
                    "base_model_path": str(base.resolve()),
                    "adapter": str(adapter_dir.resolve()),
                    "dtype": name,
                    "torch": torch.__version__,
                    "transformers": transformers.__version__,
                },
                indent=1,
            )
            + "\n"
        )
        write_output_marker(staged, "qalign merge")
        # The folder may have changed while the model was being merged.
        claim_output_dir(target, overwrite=overwrite, legacy=(MERGE_RECORD,), inputs=(adapter_dir, base))
        replace_dir(staged, target)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
        if bars:
            transformers.utils.logging.enable_progress_bar()
    return MergeResult(target, base, adapter_dir, name)


def _checkpoint_dtype(path: Path) -> str:
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return "float32"
    for holder in (config, config.get("text_config") or {}):
        value = holder.get("dtype") or holder.get("torch_dtype")
        if isinstance(value, str) and value in ("float32", "bfloat16", "float16"):
            return value
    return "float32"
