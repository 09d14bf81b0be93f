"""Tiny random builds of every family the toolkit supports: the library's
(:mod:`toolkit.models.tiny_families`) and the tiny PaliGemma of ``tests/paligemma_tiny.py``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from toolkit.models.tiny_families import BUILDERS as LIBRARY_BUILDERS


def build_paligemma(out: Path, seed: int = 0) -> Path:
    """The tiny PaliGemma of ``tests/paligemma_tiny.py`` (PaliGemma is prompted without a chat template)."""
    from paligemma_tiny import build_tiny_paligemma

    build_tiny_paligemma(out, seed=seed)
    return out


BUILDERS: dict[str, Callable[..., Path]] = {**LIBRARY_BUILDERS, "paligemma": build_paligemma}
"""Family name (as in :data:`toolkit.models.families.FAMILIES`) -> tiny builder."""
