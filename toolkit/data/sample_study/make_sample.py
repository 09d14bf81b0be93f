"""Regenerates the bundled sample study's media (synthetic scenes, so no licence questions).

Run from the repository root: ``python toolkit/data/sample_study/make_sample.py``. The output is
deterministic up to the JPEG/H.264 encoders' versions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

HERE = Path(__file__).resolve().parent
SIZE = (320, 240)


def scene(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    w, h = SIZE
    y = np.linspace(0, 1, h)[:, None, None]
    sky = (np.array([90, 150, 230]) * (1 - y) + np.array([250, 220, 170]) * y).astype(np.uint8)
    img = Image.fromarray(np.broadcast_to(sky, (h, w, 3)).copy())
    draw = ImageDraw.Draw(img)
    draw.rectangle([0, int(h * 0.7), w, h], fill=(60, 130, 60))
    for _ in range(6):
        x0, y0 = rng.integers(0, w - 60), rng.integers(20, h - 60)
        size = int(rng.integers(25, 60))
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        draw.ellipse([x0, y0, x0 + size, y0 + size], fill=colour, outline=(0, 0, 0), width=2)
    for x in range(0, w, 16):  # fine stripes show blur and compression at once
        draw.line([x, int(h * 0.72), x + 8, h], fill=(240, 240, 240), width=2)
    return img


def noisy(img: Image.Image, sd: float, seed: int) -> Image.Image:
    arr = np.asarray(img, dtype=float) + np.random.default_rng(seed).normal(0, sd, (SIZE[1], SIZE[0], 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def save(img: Image.Image, name: str, quality: int = 90) -> None:
    img.save(HERE / name, quality=quality)


def main() -> None:
    a, b, c = scene(1), scene(2), scene(3)
    save(a, "training_excellent.jpg")
    save(noisy(a.filter(ImageFilter.GaussianBlur(1.5)), 12, 1), "training_fair.jpg")
    save(noisy(a.filter(ImageFilter.GaussianBlur(5)), 40, 2), "training_bad.jpg", quality=15)
    save(c, "gold_excellent.jpg")
    save(noisy(c.filter(ImageFilter.GaussianBlur(6)), 45, 3), "gold_bad.jpg", quality=10)
    save(b, "scene_b_sharp.jpg")
    save(b.filter(ImageFilter.GaussianBlur(2.5)), "scene_b_blur.jpg")
    save(noisy(b, 25, 4), "scene_b_noise.jpg")
    save(b, "scene_b_jpeg.jpg", quality=8)

    import av

    with av.open(str(HERE / "clip.mp4"), "w") as container:
        stream = container.add_stream("libx264", rate=12)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        stream.options = {"crf": "30"}
        base = np.asarray(scene(4).resize((200, 120)))
        for t in range(24):  # 2 s at 12 fps: a slow pan
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(base[:, t : t + 160]), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


if __name__ == "__main__":
    main()
