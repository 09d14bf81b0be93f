"""Training throughput (samples/s) of the fine-tuning loop on randomly initialised models.

    python bench/train_throughput.py                      # tiny + mid-size, CPU, full and LoRA
    python bench/train_throughput.py --models tiny --threads 1 2
    python bench/train_throughput.py --device cuda --dtype bf16 --models mid
    python bench/train_throughput.py --models tiny --modes full --losses ce soft score --threads 1
    python bench/train_throughput.py --models mid --modes lora --gradient-checkpointing
    python bench/train_throughput.py --onealign /tmp/one-align-size --device cuda --recipes onealign-lora \
        --batch-size 8 --steps 6

``--onealign DIR`` trains OneAlign at the size of a weightless folder written by
``bench/full_size_onealign.py`` (8.2 B parameters, random float32 master weights built on the
device) with the named recipes; ``--llm-layers N`` keeps the first N LLM layers only (full
fine-tuning of the whole model needs more than one GPU's memory). On a GPU the peak memory is
printed too.

Each configuration trains for ``--steps`` optimizer steps on random images with Q-Align
conversations (loading and saving excluded from the timing; the first ``--warmup`` steps are
dropped). Timings on shared machines vary 2-3x from run to run: compare figures from one run.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from toolkit.levels import level_word, soft_label
from toolkit.models.tiny import build_tiny_model
from toolkit.training import TrainConfig, TrainProgress, train

SIZES = {
    # name: build_tiny_model arguments
    "tiny": {},
    "mid": dict(
        image_size=224, patch_size=16, vision_hidden=256, vision_layers=4, text_hidden=512, text_layers=4, heads=8
    ),
}


def write_data(folder: Path, n: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    (folder / "img").mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(n):
        value = int(rng.integers(1, 6))
        name = f"img/{i}.png"
        Image.fromarray(rng.integers(0, 256, (256, 320, 3), dtype=np.uint8)).save(folder / name)
        # A vote histogram for the soft-label loss (and a 1-5 score for the direct-score one).
        probs = soft_label([value], [0.8])[0]
        records.append(
            {
                "id": name,
                "image": name,
                "gt_score": value,
                "level_probs": probs.tolist(),
                "conversations": [
                    {"from": "human", "value": "How would you rate the quality of this image?\n<|image|>"},
                    {"from": "gpt", "value": f"The quality of the image is {level_word(value)}."},
                ],
            }
        )
    path = folder / "train.json"
    path.write_text(json.dumps(records))
    return path


def measure(
    model_dir: Path,
    data: Path,
    out: Path,
    args: argparse.Namespace,
    mode: str,
    threads: int | None,
    loss: str = "ce",
    recipe: str | None = None,
    backbone=None,
) -> dict:
    times: list[float] = []
    last = [time.perf_counter()]

    def tick(p: TrainProgress) -> None:
        now = time.perf_counter()
        times.append(now - last[0])
        last[0] = now

    settings = dict(
        model=str(model_dir),
        data=str(data),
        out=str(out),
        max_steps=args.steps,
        batch_size=args.batch_size,
        device=args.device,
        cpu_threads=threads,
        num_workers=args.workers,
        loss=loss,
    )
    if recipe:  # the recipe's mode, learning rate, precision and checkpointing
        config = TrainConfig.from_dict({**settings, "recipe": recipe})
    else:
        config = TrainConfig(
            **settings, mode=mode, lr=1e-3, dtype=args.dtype, gradient_checkpointing=args.gradient_checkpointing
        )
    cuda = args.device.startswith("cuda")
    if cuda:
        import torch

        torch.cuda.reset_peak_memory_stats()
    result = train(config, progress=tick, backbone=backbone)
    steady = times[args.warmup :] or times
    sec_per_step = float(np.median(steady))
    peak = None
    if cuda:
        import torch

        peak = torch.cuda.max_memory_allocated() / 2**30
    return {
        "mode": config.mode,
        "recipe": recipe,
        "dtype": config.dtype,
        "gradient_checkpointing": config.gradient_checkpointing,
        "peak_gib": peak,
        "loss": loss,
        "threads": threads or "default",
        "trainable": result.trainable_parameters,
        "params": result.total_parameters,
        "sec_per_step": sec_per_step,
        "samples_per_s": args.batch_size / sec_per_step,
        "overall_samples_per_s": result.samples_per_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["tiny", "mid"], choices=sorted(SIZES))
    parser.add_argument("--modes", nargs="+", default=["full", "lora"], choices=["full", "lora"])
    parser.add_argument("--losses", nargs="+", default=["ce"], choices=["ce", "soft", "score"])
    parser.add_argument(
        "--gradient-checkpointing", action="store_true", help="recompute activations in the backward pass"
    )
    parser.add_argument("--threads", nargs="+", type=int, default=[0], help="CPU threads; 0 = torch default")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument(
        "--onealign",
        type=Path,
        help="weightless OneAlign folder (bench/full_size_onealign.py): "
        "train that size with random weights instead of --models",
    )
    parser.add_argument("--recipes", nargs="+", default=["onealign-lora"], help="recipes for --onealign")
    parser.add_argument("--llm-layers", type=int, default=None, help="with --onealign: keep the first N LLM layers")
    parser.add_argument(
        "--frozen-float32",
        action="store_true",
        help="keep frozen weights in float32 (the loop's default holds them in 16 bits under bf16/fp16)",
    )
    args = parser.parse_args()

    if args.frozen_float32:
        import toolkit.training.loop as loop
        from toolkit.training.precision import HalvedWeights

        loop.hold_frozen_weights_in_16bit = lambda model: HalvedWeights()  # type: ignore[assignment]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = write_data(root / "data", max(args.batch_size * 4, 32))
        if args.onealign:
            rows = measure_onealign(args, root, data)
        for name in [] if args.onealign else args.models:
            model_dir = build_tiny_model(root / name, **SIZES[name])
            for mode, loss, threads in itertools.product(args.modes, args.losses, args.threads):
                out = root / f"out-{name}-{mode}-{loss}-{threads}"
                row = {"model": name, **measure(model_dir, data, out, args, mode, threads or None, loss)}
                rows.append(row)
                print(
                    f"{name:5s} {mode:4s} {loss:5s} threads={row['threads']!s:7s} params={row['params'] / 1e6:6.2f}M "
                    f"trainable={row['trainable'] / 1e6:6.3f}M  {row['sec_per_step'] * 1e3:8.1f} ms/step  "
                    f"{row['samples_per_s']:8.1f} samples/s (batch {args.batch_size}, {args.device}, {args.dtype}, "
                    f"workers {args.workers}{', grad. checkpointing' if args.gradient_checkpointing else ''})",
                    flush=True,
                )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


def random_onealign_float32(folder: Path, device: str, llm_layers: int | None):
    """A OneAlign backbone with random float32 weights (the training loop's master weights),
    built straight on ``device`` from ``folder``'s config. The values are drawn in bfloat16 and
    widened, as loading the released 16-bit checkpoint into float32 gives."""
    import torch

    from toolkit.models.onealign import MPLUGOwl2Config, MPLUGOwl2LlamaForCausalLM, OneAlignBackbone, OneAlignProcessor

    config = MPLUGOwl2Config.from_pretrained(folder)
    if llm_layers:
        config.num_hidden_layers = llm_layers
    with torch.device(device):
        net = MPLUGOwl2LlamaForCausalLM._from_config(config, dtype=torch.bfloat16).float()
    return OneAlignBackbone(net, OneAlignProcessor.from_pretrained(folder))


def measure_onealign(args: argparse.Namespace, root: Path, data: Path) -> list[dict]:
    import gc

    import torch

    rows = []
    layers = f"first {args.llm_layers} LLM layers" if args.llm_layers else "all layers"
    for recipe in args.recipes:
        backbone = random_onealign_float32(args.onealign, args.device, args.llm_layers)
        try:
            row = {
                "model": f"onealign ({layers})",
                **measure(args.onealign, data, root / f"out-{recipe}", args, "", None, "ce", recipe, backbone),
            }
            rows.append(row)
            print(
                f"OneAlign ({layers}, {row['params'] / 1e9:.2f} B parameters), recipe {recipe}"
                f"{', frozen weights float32' if args.frozen_float32 else ''}: trainable "
                f"{row['trainable'] / 1e6:.1f} M, {row['sec_per_step']:.2f} s/step, "
                f"{row['samples_per_s']:.1f} samples/s, "
                f"peak {row['peak_gib'] or float('nan'):.1f} GiB "
                f"(batch {args.batch_size}, {args.device}, {row['dtype']}, "
                f"{'gradient checkpointing' if row['gradient_checkpointing'] else 'no checkpointing'})",
                flush=True,
            )
        except torch.OutOfMemoryError as exc:
            peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else float("nan")
            print(
                f"OneAlign ({layers}), recipe {recipe}: out of memory at batch {args.batch_size} "
                f"(peak {peak:.1f} GiB before the failure): {str(exc).splitlines()[0]}",
                flush=True,
            )
        del backbone
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return rows


if __name__ == "__main__":
    sys.exit(main())
