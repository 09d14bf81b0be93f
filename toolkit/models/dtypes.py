"""Names of the floating-point types a user may ask for, and what each layer calls them.

One table, so ``--dtype bf16`` means the same to the scorer, the loader and the trainer. Torch is
not imported here: the names are plain strings until a caller turns them into ``torch.dtype``.
"""

from __future__ import annotations

from toolkit.errors import InputError

DTYPE_ALIASES: dict[str, str] = {
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
}
"""Every accepted spelling -> the ``torch`` attribute name."""

MIXED_PRECISION: dict[str, str] = {"float32": "no", "bfloat16": "bf16", "float16": "fp16"}
"""``torch`` dtype name -> accelerate's ``mixed_precision`` setting."""

AUTO = "auto"


def canonical_dtype(name: str, allow_auto: bool = False) -> str:
    """``'bf16' -> 'bfloat16'`` ... ; ``'auto'`` passes through when allowed; otherwise a clear error."""
    key = str(name).strip().lower()
    if allow_auto and key == AUTO:
        return AUTO
    if key not in DTYPE_ALIASES:
        choices = "float32, bfloat16 (bf16), float16 (fp16)" + (" or auto" if allow_auto else "")
        raise InputError(f"unknown dtype {name!r}; use {choices}")
    return DTYPE_ALIASES[key]
