"""Where a scoring run spends its time: a torch.profiler breakdown of one ``Scorer.score`` call by stage.

Stages (each a ``record_function`` range put around the library function that does it, in this
script only): decoding the files, building the model inputs (square padding, resize, crop,
tokens), normalising the uint8 pixels and copying them to the device, the vision tower, the
abstractor (OneAlign) or projector (LLaVA-style), putting the visual tokens into the prompt, the
language model with its head, and softmax plus output writing; "other" is the rest of the wall time
(the engine's own bookkeeping, the DataLoader, profiler overhead). Decoding runs in the main process
(``--num-workers 0``) so that it is counted; with workers it overlaps the model instead.

Before the profiled run the script times the first batch after the weights are loaded (what a user
waits for before the first rows appear), with and without ``--compile``. Examples::

    python bench/engine_profile.py                               # tiny model and the OneAlign fixture, CPU
    python bench/engine_profile.py --models onealign-medium --images 32 --size 1024x768
    python bench/engine_profile.py --models /path/to/one-align --random-init --device cuda \\
        --dtype bfloat16 --batch-size 64 --images 512 --num-workers 0 --compile auto

``onealign-medium`` is the fixture's architecture at a size a CPU can still run (448 px inputs, 32x32
patch grid, 64 queries as the real model; 4 ViT, 2 abstractor and 4 LLM layers, hidden 128/128/256)
with random weights: the real model's token counts at a fraction of its compute.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling bench scripts
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "onealign-tiny"

STAGES = (
    "decode",
    "model inputs",
    "normalise + to device",
    "vision tower",
    "abstractor / projector",
    "visual token merge",
    "LLM + head",
    "softmax + output",
)


def medium_onealign(device: str, dtype: str):
    """The fixture's OneAlign architecture grown to the real model's token counts (see the docstring)."""
    import torch

    from toolkit.models.loading import resolve_dtype
    from toolkit.models.onealign import MPLUGOwl2Config, MPLUGOwl2LlamaForCausalLM, OneAlignBackbone, OneAlignProcessor
    from toolkit.models.onealign.processing import ImageSettings

    config = MPLUGOwl2Config.from_pretrained(FIXTURE)
    config.hidden_size, config.intermediate_size = 256, 688
    config.num_hidden_layers, config.num_attention_heads, config.num_key_value_heads = 4, 8, 8
    vis: dict = config.visual_config or {}
    vis["visual_model"].update(image_size=448, hidden_size=128, intermediate_size=512, num_hidden_layers=4)
    vis["visual_abstractor"].update(
        grid_size=32, hidden_size=128, encoder_hidden_size=128, intermediate_size=352, num_learnable_queries=64
    )
    torch.manual_seed(0)
    with torch.device(device):
        net = MPLUGOwl2LlamaForCausalLM._from_config(config, dtype=resolve_dtype(dtype, device))
    base = OneAlignProcessor.from_pretrained(FIXTURE)
    settings = ImageSettings(shortest_edge=448, crop_height=448, crop_width=448)
    return OneAlignBackbone(net.eval(), OneAlignProcessor(base.tokenizer, settings))


def load(name: str, args: argparse.Namespace):
    from score_throughput import random_onealign

    from toolkit.models.loading import load_backbone

    if name == "onealign-medium":
        return medium_onealign(args.device, args.dtype)
    if name == "onealign-fixture":
        return load_backbone(FIXTURE, None, args.dtype, args.device)
    if args.random_init:
        return random_onealign(name, args.dtype, args.device)
    return load_backbone(name, None, args.dtype, args.device)


def _wrap(owner: Any, attr: str, label: str, saved: list) -> None:
    import torch

    original = getattr(owner, attr)
    saved.append((owner, attr, owner.__dict__.get(attr, _MISSING) if hasattr(owner, "__dict__") else _MISSING))

    def call(*args: Any, **kwargs: Any) -> Any:
        with torch.profiler.record_function(label):
            return original(*args, **kwargs)

    setattr(owner, attr, call)


_MISSING = object()


def _wrap_module(module: Any, label: str, saved: list) -> None:
    # A compiled module is labelled around its compiled call: replacing its ``forward`` would
    # fail the compiled graph's guards and compile it again.
    _wrap(module, "_compiled_call_impl" if module._compiled_call_impl is not None else "forward", label, saved)


@contextmanager
def stage_ranges(backbone) -> Iterator[None]:
    """Label the stages of a scoring run with profiler ranges (undone on exit)."""
    from toolkit.scoring import decode, engine, results, sources

    saved: list = []
    _wrap(sources, "decode_input", "decode", saved)
    _wrap(backbone, "transfer_batch", "model inputs", saved)
    _wrap(engine, "_checked_probabilities", "softmax + output", saved)
    _wrap(engine, "chunks_to_frame", "softmax + output", saved)
    _wrap(results.ResultAppender, "append", "softmax + output", saved)
    del decode
    inner = next(m for m in backbone.model.modules() if hasattr(m, "visual_abstractor") or hasattr(m, "vision_tower"))
    if hasattr(inner, "visual_abstractor"):  # OneAlign
        from toolkit.models.onealign import modeling

        _wrap(backbone.processor, "normalize", "normalise + to device", saved)
        _wrap_module(inner.vision_model, "vision tower", saved)
        _wrap_module(inner.visual_abstractor, "abstractor / projector", saved)
        _wrap(modeling, "merge_visual_tokens", "visual token merge", saved)
        _wrap(inner, "forward", "LLM + head", saved)
        _wrap(backbone.model.lm_head, "forward", "LLM + head", saved)
    else:  # LLaVA-style: the language model's forward covers the decoder, the head is outside it
        _wrap_module(inner.vision_tower, "vision tower", saved)
        _wrap_module(inner.multi_modal_projector, "abstractor / projector", saved)
        _wrap(inner.language_model, "forward", "LLM + head", saved)
        _wrap(backbone.model.lm_head, "forward", "LLM + head", saved)
    try:
        yield
    finally:
        for owner, attr, before in reversed(saved):
            if before is _MISSING:
                delattr(owner, attr)
            else:
                setattr(owner, attr, before)


def first_batch_seconds(backbone, paths: list[Path], args: argparse.Namespace) -> float:
    """Seconds from loaded weights to the first batch's rows (lazy initialisation included)."""
    from toolkit.scoring import Scorer

    t = time.perf_counter()
    Scorer(backbone, batch_size=args.batch_size, num_workers=args.num_workers, progress=False).score(
        paths[: args.batch_size]
    )
    sync(args.device)
    return time.perf_counter() - t


def timed_run(backbone, paths: list[Path], args: argparse.Namespace) -> float:
    """Seconds of one scoring run of every file, without the profiler."""
    from toolkit.scoring import Scorer

    scorer = Scorer(backbone, batch_size=args.batch_size, num_workers=args.num_workers, progress=False)
    t = time.perf_counter()
    scorer.score(paths)
    sync(args.device)
    return time.perf_counter() - t


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def profile_run(backbone, paths: list[Path], out: Path, args: argparse.Namespace) -> tuple[float, dict[str, float]]:
    """Wall seconds of one profiled scoring run and milliseconds per stage (device time on a GPU)."""
    from torch.profiler import ProfilerActivity, profile

    from toolkit.scoring import Scorer

    scorer = Scorer(backbone, batch_size=args.batch_size, num_workers=args.num_workers, progress=False)
    cuda = args.device.startswith("cuda")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with stage_ranges(backbone), profile(activities=activities) as prof:
        t = time.perf_counter()
        scorer.score(paths, out=out)
        sync(args.device)
        wall = time.perf_counter() - t
    per_stage: dict[str, float] = {}
    for evt in prof.key_averages():
        if evt.key in STAGES:
            # On a GPU the device time of the range is the stage's cost; the host only queues it.
            us = evt.device_time_total if cuda and evt.device_time_total else evt.cpu_time_total
            per_stage[evt.key] = per_stage.get(evt.key, 0.0) + us / 1000
    return wall, per_stage


def print_table(name: str, wall: float, per_stage: dict[str, float], n: int) -> None:
    total_ms = wall * 1000
    print(f"\n{name}: {n} images in {wall:.2f} s under the profiler ({n / wall:.1f} img/s)")
    print(f"{'stage':>24} | {'ms':>9} | {'ms/image':>8} | {'share':>6}")
    print("-" * 58)
    for stage in STAGES:
        ms = per_stage.get(stage, 0.0)
        print(f"{stage:>24} | {ms:9.1f} | {ms / n:8.2f} | {100 * ms / total_ms:5.1f}%")
    other = max(0.0, total_ms - sum(per_stage.values()))
    print(f"{'other':>24} | {other:9.1f} | {other / n:8.2f} | {100 * other / total_ms:5.1f}%", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--models",
        default="tiny,onealign-fixture",
        help="comma list: tiny, onealign-fixture, onealign-medium, or a model folder",
    )
    ap.add_argument("--random-init", action="store_true", help="a OneAlign folder's config with random weights")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--size", default="448x448", help="WIDTHxHEIGHT of the generated JPEG files")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--num-workers", type=int, default=0)
    ap.add_argument("--attention", default=None, help="sdpa or eager (default: as loaded)")
    ap.add_argument("--compile", default="off", help="torch.compile mode of the image path (off, auto, default, ...)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument(
        "--model-batch-sizes",
        default="",
        help="also time the model alone on preprocessed 448 px pixels at these batch sizes (as score_throughput.py)",
    )
    args = ap.parse_args()

    import torch
    from score_throughput import make_images

    from toolkit.scoring.compile import apply_speed_options

    if args.threads:
        torch.set_num_threads(args.threads)
    width, height = (int(v) for v in args.size.lower().split("x"))
    print(
        f"device {args.device}, {args.dtype}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_images(Path(tmp), args.images, width, height)
        for i, name in enumerate(m for m in args.models.split(",") if m):
            t = time.perf_counter()
            backbone = load(name, args)
            sync(args.device)
            load_s = time.perf_counter() - t
            report = apply_speed_options(backbone, args.attention, args.compile, warmup=None)
            params = sum(p.numel() for p in backbone.model.parameters()) / 1e6
            first = first_batch_seconds(backbone, paths, args)
            print(
                f"\n{name} ({params:.2f} M parameters; {report.summary()}): weights loaded in {load_s:.2f} s, "
                f"first batch of {args.batch_size} {first:.2f} s after that",
                flush=True,
            )
            sizes = [int(b) for b in args.model_batch_sizes.split(",") if b]
            if sizes:
                from score_throughput import model_alone, model_batches

                rates = model_alone(backbone, model_batches(backbone, sizes, "quality"), 5)
                print(f"{name}: model alone " + ", ".join(f"batch {b} {r:.1f} img/s" for b, r in rates.items()))
            plain = timed_run(backbone, paths, args)  # also warms the caches before the profiled run
            print(f"{name}: {len(paths) / plain:.1f} img/s without the profiler ({plain:.2f} s)", flush=True)
            wall, per_stage = profile_run(backbone, paths, Path(tmp) / f"scores{i}.csv", args)
            print_table(name, wall, per_stage, len(paths))
            print(f"load average {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
