"""Toy training data the tiny model learns in seconds: checkerboards with a share of flat cells.

The share of flattened 8-pixel cells (one patch of the tiny model each) sets the quality level,
so a model trained from scratch can see it within a few dozen steps.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from toolkit.levels import level_word, soft_label

QUESTIONS = {
    "quality": "How would you rate the quality of this image?\n<|image|>",
    "aesthetics": "Rate the aesthetics of this image.\n<|image|>",
}


def toy_image(value: int, rng: np.random.Generator, size: int = 32, grid: int = 4) -> Image.Image:
    """A high-contrast checkerboard in a random colour with (5 - value) / 4 of its cells flattened."""
    yy, xx = np.mgrid[0:size, 0:size]
    colour = rng.integers(60, 200, 3).astype(np.float32)
    arr = colour + 50.0 * np.where((yy // 2 + xx // 2) % 2 == 0, 1.0, -1.0)[..., None]
    cell = size // grid
    for c in rng.permutation(grid * grid)[: round((5 - value) / 4 * grid * grid)]:
        r, q = divmod(int(c), grid)
        block = arr[r * cell : (r + 1) * cell, q * cell : (q + 1) * cell]
        block[...] = block.reshape(-1, 3).mean(axis=0)
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8))


def write_toy(folder: Path, name: str, n: int, seed: int, task: str = "quality", votes: bool = False) -> Path:
    """``n`` records in ``folder/name.json`` with images in ``folder/img``.

    ``votes``: each record gets a vote histogram (``level_probs``, a DeQA-style soft label around
    its level with rater spread 0.6-1.0) and ``gt_score`` = its mean; the answer is the level
    nearest the mean.
    """
    rng = np.random.default_rng(seed)
    (folder / "img").mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(n):
        value = int(rng.integers(1, 6))
        rel = f"img/{name}_{i}.png"
        toy_image(value, rng).save(folder / rel)
        record = {"id": rel, "image": rel, "gt_score": value}
        level = value
        if votes:
            mos = float(np.clip(value + rng.normal(0, 0.3), 1, 5))
            probs = soft_label([mos], [rng.uniform(0.6, 1.0)])[0]
            record.update(gt_score=mos, level_probs=[float(p) for p in probs])
            level = int(np.clip(round(mos), 1, 5))
        record["conversations"] = [
            {"from": "human", "value": QUESTIONS[task]},
            {"from": "gpt", "value": f"The {task} of the image is {level_word(level)}."},
        ]
        records.append(record)
    path = folder / f"{name}.json"
    path.write_text(json.dumps(records))
    return path
