"""Demo stimuli: shipped source scenes with graded, spatially visible degradations.

The degradation replaces a growing share of a 4x4 grid of cells by each cell's mean colour
("flat patches", as in heavy compression or missing data). It is chosen because a tiny model
trained from scratch on a CPU can learn it in a few hundred steps; blur or noise strength are
too subtle for a model of that size.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

GRID = 4  # one cell per visual patch of the tiny model (32 px input, 8 px patches)
GRADE_FRACTIONS = (0.0, 0.25, 0.5, 0.75, 1.0)  # grade 0 = pristine .. 4 = no detail left


@dataclass(frozen=True)
class Stimulus:
    path: str  # relative to the media root
    source: str  # the content group: no source may appear in two splits
    grade: int  # 0..len(GRADE_FRACTIONS)-1
    quality: float  # the latent 1-5 quality the simulated raters perceive


def source_scenes() -> list[Path]:
    folder = resources.files("toolkit") / "data" / "demo_sources"
    return sorted(Path(str(p)) for p in folder.iterdir() if p.name.endswith(".png"))


def flatten_cells(image: Image.Image, fraction: float, rng: np.random.Generator) -> Image.Image:
    """Replace ``fraction`` of the grid cells, chosen at random, by their mean colour."""
    arr = np.asarray(image.convert("RGB"), dtype=np.float32).copy()
    h, w = arr.shape[:2]
    ys = np.linspace(0, h, GRID + 1).astype(int)
    xs = np.linspace(0, w, GRID + 1).astype(int)
    cells = rng.permutation(GRID * GRID)[: int(round(fraction * GRID * GRID))]
    for cell in cells:
        r, c = divmod(int(cell), GRID)
        block = arr[ys[r] : ys[r + 1], xs[c] : xs[c + 1]]
        block[...] = block.reshape(-1, 3).mean(axis=0)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def latent_quality(grade: int, rng: np.random.Generator) -> float:
    """1-5 quality of a grade, with a little content-dependent spread."""
    top = len(GRADE_FRACTIONS) - 1
    base = 4.7 - 3.4 * grade / top
    return float(np.clip(base + rng.normal(0, 0.15), 1.0, 5.0))


def make_stimuli(out_dir: Path, n_sources: int | None = None, variants: int = 2, seed: int = 0) -> list[Stimulus]:
    """Write every source at every grade (``variants`` random cell choices each) into ``out_dir``."""
    rng = np.random.default_rng(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    stimuli = []
    for src in source_scenes()[:n_sources]:
        scene = Image.open(src).convert("RGB")
        for grade, fraction in enumerate(GRADE_FRACTIONS):
            for variant in range(variants if 0 < fraction < 1 else 1):  # grades 0 and 4 have one form
                name = f"{src.stem}_g{grade}v{variant}.png"
                flatten_cells(scene, fraction, rng).save(out_dir / name)
                stimuli.append(Stimulus(name, src.stem, grade, latent_quality(grade, rng)))
    return stimuli
