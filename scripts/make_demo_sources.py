"""Regenerate the demo's source pictures in toolkit/data/demo_sources/ (run once; the PNGs are committed).

Sixteen 96x96 synthetic scenes: smooth colour fields with a few shapes and fine texture, so
that replacing regions by flat patches (the demo's degradation) is a visible loss of detail.
"""

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

OUT = Path(__file__).resolve().parents[1] / "toolkit" / "data" / "demo_sources"


def scene(rng: np.random.Generator, size: int = 96) -> Image.Image:
    y, x = np.mgrid[0:size, 0:size] / size
    channels = []
    for _ in range(3):
        field = np.zeros((size, size))
        for _ in range(3):
            fx, fy, phase = rng.uniform(0.5, 3.0), rng.uniform(0.5, 3.0), rng.uniform(0, 2 * np.pi)
            field += np.sin(2 * np.pi * (fx * x + fy * y) + phase)
        channels.append(field)
    img = np.stack(channels, axis=-1)
    img = (img - img.min()) / (np.ptp(img) + 1e-9)
    # Texture in 2x2-pixel grains survives the downscaling to a small model's input size.
    grain = rng.normal(0, 30, (size // 2, size // 2, 3)).repeat(2, axis=0).repeat(2, axis=1)
    img = 40 + 175 * img + grain
    picture = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(picture)
    for _ in range(rng.integers(3, 7)):
        x0, y0 = rng.integers(0, size - 20, 2)
        w, h = rng.integers(10, 40, 2)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            draw.ellipse([x0, y0, x0 + w, y0 + h], outline=colour, width=2)
        else:
            draw.line([x0, y0, x0 + w, y0 + h], fill=colour, width=2)
    return picture


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2023)
    for i in range(16):
        scene(rng).save(OUT / f"scene{i:02d}.png", optimize=True)


if __name__ == "__main__":
    main()
