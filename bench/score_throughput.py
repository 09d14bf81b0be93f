"""Scoring throughput: images per second against batch size, with a batch-of-1 loop as baseline.

The baseline is the plain loop most scripts write (open one image, build its prompt, one
forward, next image), run on the same inputs in the same process, so the printed ratios hold
on a noisy shared machine where absolute figures wander. Examples::

    python bench/score_throughput.py                                  # tiny model, CPU
    python bench/score_throughput.py --model one-align --device cuda --dtype bfloat16 \\
        --batch-sizes 1,8,16,32 --num-workers 8 --images 256 --size 1024x768

``--random-init`` builds a OneAlign folder's model from its ``config.json`` with random weights,
which measures the real model's speed where its 16 GB of weights are not at hand.

``max |dp|`` is the largest probability difference from the baseline. It is rounding only: on a
CPU in float32 it stays near 1e-7; on GPUs batch-size-dependent kernels, TF32 convolutions and
bfloat16 make it larger (and random full-size weights amplify it).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def make_images(folder: Path, n: int, width: int, height: int, seed: int = 0) -> list[Path]:
    """JPEG photographs stand-ins: smooth gradients plus noise, so decoding costs what it does in practice."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    paths = []
    for i in range(n):
        base = (np.sin(xx / (20 + i)) + np.cos(yy / (15 + i))) * 60 + 128
        arr = np.clip(base[..., None] + rng.normal(0, 20, (height, width, 3)), 0, 255).astype(np.uint8)
        p = folder / f"img{i:04d}.jpg"
        Image.fromarray(arr).save(p, quality=90)
        paths.append(p)
    return paths


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def baseline_loop(backbone, paths: list[Path], task: str) -> tuple[float, np.ndarray]:
    """One image at a time, no DataLoader: the naive reference loop."""
    import torch

    from toolkit.media import open_image
    from toolkit.scoring import level_probabilities

    out = []
    t0 = time.perf_counter()
    for p in paths:
        batch = backbone.scoring_batch([[open_image(p)]], task, "image")
        with torch.inference_mode():
            out.append(level_probabilities(backbone.level_logits(batch)))
    sync(str(backbone.device))
    return time.perf_counter() - t0, np.vstack(out)


def random_onealign(model: str, dtype: str, device: str):
    """A OneAlign backbone with random weights from a folder's ``config.json`` (no weights file
    needed): the real model's compute at its real size, for throughput only."""
    import torch

    from toolkit.models.loading import model_type, resolve_dtype, resolve_model_path
    from toolkit.models.onealign import MPLUGOwl2Config, MPLUGOwl2LlamaForCausalLM, OneAlignBackbone, OneAlignProcessor

    path = resolve_model_path(model)
    if model_type(path) != "mplug_owl2":
        raise SystemExit("--random-init needs a OneAlign (mplug_owl2) folder: config.json, tokenizer, preprocessor_config.json")
    config = MPLUGOwl2Config.from_pretrained(path)
    with torch.device(device):
        net = MPLUGOwl2LlamaForCausalLM._from_config(config, dtype=resolve_dtype(dtype, device))
    return OneAlignBackbone(net.eval(), OneAlignProcessor.from_pretrained(path))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny", help="model folder or 'tiny'")
    ap.add_argument("--adapter", default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--task", default="quality")
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--size", default="512x384", help="WIDTHxHEIGHT of the generated images")
    ap.add_argument("--batch-sizes", default="1,2,4,8,16")
    ap.add_argument("--num-workers", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=2, help="timed passes per setting (best is reported)")
    ap.add_argument("--random-init", action="store_true",
                    help="OneAlign folder without weights: random weights from its config.json (throughput only)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads; on a loaded shared machine 1 avoids OpenMP spin contention")
    args = ap.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    from toolkit.models.loading import load_backbone
    from toolkit.scoring import PROB_COLUMNS, Scorer

    width, height = (int(v) for v in args.size.lower().split("x"))
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    t0 = time.perf_counter()
    if args.random_init:
        backbone = random_onealign(args.model, args.dtype, args.device)
    else:
        backbone = load_backbone(args.model, args.adapter, args.dtype, args.device)
    load_s = time.perf_counter() - t0
    params = sum(p.numel() for p in backbone.model.parameters())
    print(f"model {args.model} ({params / 1e6:.2f} M parameters) on {backbone.device}, {args.dtype}; "
          f"loaded in {load_s:.1f} s; torch threads {torch.get_num_threads()}")

    with tempfile.TemporaryDirectory() as tmp:
        paths = make_images(Path(tmp), args.images, width, height)
        scorer = Scorer(backbone, progress=False, num_workers=args.num_workers)
        baseline_loop(backbone, paths[:4], args.task)  # warm-up (lazy inits, kernels)
        base_s, base_probs = min((baseline_loop(backbone, paths, args.task) for _ in range(args.repeats)),
                                 key=lambda r: r[0])
        base_ips = len(paths) / base_s
        print(f"\n{len(paths)} images {width}x{height}, task {args.task}, num_workers {args.num_workers}\n")
        print(f"{'setting':>22} | {'images/s':>9} | {'vs baseline':>11} | {'max |dp|':>9}")
        print("-" * 62)
        print(f"{'baseline loop (bs 1)':>22} | {base_ips:9.2f} | {1.0:10.2f}x | {0.0:9.1e}")
        for bs in sizes:
            best = float("inf")
            for _ in range(args.repeats):
                t = time.perf_counter()
                df = scorer.score(paths, task=args.task, batch_size=bs)
                sync(str(backbone.device))
                best = min(best, time.perf_counter() - t)
            diff = np.abs(df[list(PROB_COLUMNS)].to_numpy(float) - base_probs).max()
            ips = len(paths) / best
            print(f"{'Scorer batch ' + str(bs):>22} | {ips:9.2f} | {ips / base_ips:10.2f}x | {diff:9.1e}")


if __name__ == "__main__":
    main()
