"""Figures for the native OneAlign port: parity on a device, memory and speed at the real size.

    python bench/onealign_port.py --fixture tests/fixtures/onealign-tiny [--device cuda] [--real-size]

1. Tiny fixture (if given): level logits on ``--device`` in float32 and bfloat16 against the
   reference values of ``expected.json`` (max absolute difference).
2. ``--real-size``: a randomly initialised model with the real OneAlign shapes (LLaMA-2-7B,
   ViT-L/14 at 448 px, 64 queries) in bfloat16: weight memory, scoring throughput and peak
   memory per attention implementation, batched-vs-single agreement, and one training step
   (forward + backward, gradient checkpointing) with its peak memory. Random weights say
   nothing about quality; they only exercise the shapes. Needs a GPU with >= 40 GB.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from toolkit.models.base import TrainingExample
from toolkit.models.onealign import (
    MPLUGOwl2Config,
    MPLUGOwl2LlamaForCausalLM,
    OneAlignBackbone,
    OneAlignProcessor,
    load_onealign_backbone,
)
from toolkit.models.onealign.processing import ImageSettings


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def fixture_parity(fixture: Path, device: str) -> None:
    expected = json.loads((fixture / "expected.json").read_text())
    images = [Image.open(fixture / e["file"]).convert("RGB") for e in expected["images"].values()]
    frames = [Image.open(fixture / f).convert("RGB") for f in expected["video"]["frames"]]
    for dtype in ("float32", "bfloat16"):
        bb = load_onealign_backbone(fixture, dtype=dtype, device=device)
        worst = 0.0
        for task in ("quality", "aesthetics"):
            got = bb.level_logits(bb.scoring_batch([[im] for im in images], task, "image")).cpu()
            ref = torch.tensor([e[task]["level_logits"] for e in expected["images"].values()])
            worst = max(worst, float((got - ref).abs().max()))
        video = bb.level_logits(bb.scoring_batch([frames, frames[:2]], "quality", "video")).cpu()
        worst = max(worst, float((video[0] - torch.tensor(expected["video"]["quality"]["level_logits"])).abs().max()))
        print(f"fixture parity on {device} {dtype}: max |level logit - reference| = {worst:.2e}")


def real_size(fixture: Path, device: torch.device, batch: int, attn: list[str]) -> None:
    torch.manual_seed(0)
    config = MPLUGOwl2Config()
    t0 = time.perf_counter()
    with torch.device(device):
        model = MPLUGOwl2LlamaForCausalLM._from_config(config, dtype=torch.bfloat16)
    model.eval()
    _sync(device)
    n_params = sum(p.numel() for p in model.parameters())
    weights_gb = torch.cuda.memory_allocated(device) / 1e9 if device.type == "cuda" else float("nan")
    print(
        f"real size: {n_params / 1e9:.3f} B parameters, {weights_gb:.1f} GB of bf16 weights "
        f"(built in {time.perf_counter() - t0:.0f} s)"
    )

    tok = OneAlignProcessor.from_pretrained(fixture).tokenizer
    processor = OneAlignProcessor(tok, ImageSettings())  # 448 px CLIP settings of the real model
    bb = OneAlignBackbone(model, processor)
    rng = np.random.default_rng(0)
    images = [
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        for h, w in [(480, 640), (1024, 768), (500, 500), (300, 900)] * (batch // 4 + 1)
    ][:batch]

    for impl in attn:
        model.set_attn_implementation(impl)
        sb = bb.scoring_batch([[im] for im in images], "quality", "image")
        bb.level_logits(sb)  # warm-up
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        _sync(device)
        t0 = time.perf_counter()
        reps = 3
        for _ in range(reps):
            bb.level_logits(sb)
        _sync(device)
        dt = (time.perf_counter() - t0) / reps
        peak = torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else float("nan")
        print(
            f"  scoring {impl:5s}: batch {batch} images at 448 px: {dt * 1000:.0f} ms/batch, "
            f"{batch / dt:.1f} images/s, peak {peak:.1f} GB"
        )

    model.set_attn_implementation("sdpa")
    # Batched vs one at a time. A deep random-weight network amplifies rounding noise, so the
    # same comparison without any padding (one item repeated) is printed as the noise floor.
    visuals = [images[:1] * 8, images[:1], images[1:3]]
    with torch.no_grad():
        batched = bb.level_logits(bb.scoring_batch(visuals, "quality", "video"))
        single = torch.cat([bb.level_logits(bb.scoring_batch([v], "quality", "video")) for v in visuals])
        repeated = bb.level_logits(bb.scoring_batch([visuals[1]] * 3, "quality", "video"))
    print(
        f"  batched (videos of 8, 1, 2 frames, left-padded) vs one at a time, bf16: max |diff| "
        f"{float((batched - single).abs().max()):.2e}; noise floor (same item x3, no padding) "
        f"{float((repeated - single[1]).abs().max()):.2e}; logit spread {float(single.std()):.2f}"
    )

    # One training step (full fine-tuning, bf16 weights and gradients, no optimizer state).
    model.gradient_checkpointing_enable()
    model.train()
    examples = [
        TrainingExample(
            frames=[im],
            question="How would you rate the quality of this image?\n<|image|>",
            answer="The quality of the image is good.",
        )
        for im in images[:4]
    ]
    tb = bb.training_batch(examples)
    tb = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in tb.items()}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    _sync(device)
    t0 = time.perf_counter()
    loss = model(**tb, use_cache=False).loss
    loss.backward()
    _sync(device)
    peak = torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else float("nan")
    print(
        f"  training step, batch 4, gradient checkpointing: loss {loss.item():.3f}, "
        f"{time.perf_counter() - t0:.2f} s, peak {peak:.1f} GB (weights + gradients + activations)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixture", type=Path, required=True, help="the onealign-tiny fixture folder")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--real-size", action="store_true", help="also build the 8 B model with random weights")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--attn", nargs="+", default=["sdpa", "eager"])
    args = ap.parse_args()
    fixture_parity(args.fixture, args.device)
    if args.real_size:
        real_size(args.fixture, torch.device(args.device), args.batch, args.attn)


if __name__ == "__main__":
    main()
