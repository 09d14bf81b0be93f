"""Scoring throughput: images per second against batch size, with a batch-of-1 loop as baseline.

The baseline is the plain loop most scripts write (open one image, build its prompt, one
forward, next image), run on the same inputs in the same process, so the printed ratios hold
on a noisy shared machine where absolute figures wander. Examples::

    python bench/score_throughput.py                                  # tiny model, CPU
    python bench/score_throughput.py --model one-align --device cuda --dtype bfloat16 \\
        --batch-sizes 1,8,16,32 --num-workers 8 --images 256 --size 1024x768

``--random-init`` builds a OneAlign folder's model from its ``config.json`` with random weights,
straight on the device, which measures the real model's speed where its 16 GB of weights are
not at hand.

``--model-batch-sizes`` adds a "model alone" table: the same preprocessed 448 px pixels scored
again and again (host-to-device copy, vision tower, abstractor, token merge, LLM), so decoding
and preprocessing are left out. ``--compare-masked`` repeats that table with the branch
selection of the reference code (boolean-mask indexing per modality-adaptive module, which
makes the host wait for the device about 8 times per layer) to show what routing tokens once
per forward gains. ``--num-workers`` takes a list (``0,8``) to compare DataLoader settings.

A full-size GPU run that fits in a few minutes::

    python bench/score_throughput.py --model one-align-folder --random-init --device cuda \
        --dtype bfloat16 --model-batch-sizes 1,8,16,32,64 --compare-masked \
        --batch-sizes 16,32,64 --num-workers 8,14 --images 256 --size 1024x768 \
        --repeats 1 --baseline-images 16

``max |dp|`` is the largest probability difference from the baseline. It is rounding only: on a
CPU in float32 it stays near 1e-7; on GPUs batch-size-dependent kernels, TF32 convolutions and
bfloat16 make it larger (and random full-size weights amplify it).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np


def make_images(folder: Path, n: int, width: int, height: int, seed: int = 0, unique: int = 256) -> list[Path]:
    """JPEG photographs stand-ins: smooth gradients plus noise, so decoding costs what it does in practice.

    Beyond ``unique`` images the files are hard links to the first ones: separate paths that are
    decoded separately, without minutes spent encoding thousands of JPEGs for a long run.
    """
    import os

    from PIL import Image

    rng = np.random.default_rng(seed)
    xs, ys = np.arange(width), np.arange(height)
    noise = rng.normal(0, 20, (height, width, 3))  # drawn once and shifted per image: generation stays cheap
    paths = []
    for i in range(n):
        if i >= unique:
            p = folder / f"img{i:05d}.jpg"
            os.link(paths[i % unique], p)
            paths.append(p)
            continue
        base = (np.sin(xs / (20 + i))[None, :] + np.cos(ys / (15 + i))[:, None]) * 60 + 128
        arr = np.clip(base[..., None] + np.roll(noise, 37 * i, axis=1), 0, 255).astype(np.uint8)
        p = folder / f"img{i:05d}.jpg"
        Image.fromarray(arr).save(p, quality=90)
        paths.append(p)
    return paths


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


@contextmanager
def masked_selection():
    """Within this block the modality-adaptive modules select their tokens as the reference
    code does (a boolean mask per branch, which waits for the device), for before/after figures."""
    from toolkit.models.onealign import modeling

    def forward(self, hidden_states, modality):  # the reference MultiwayNetwork.forward
        if modality is None:
            return self.multiway[0](hidden_states)
        out = None
        for idx, branch in enumerate(self.multiway):
            selected = modality == idx
            if not bool(selected.any()):
                continue
            y = branch(hidden_states[selected])
            if out is None:
                out = y.new_zeros(*hidden_states.shape[:-1], y.shape[-1])
            out[selected] = y
        return out

    saved = modeling.MultiwayNetwork.forward, modeling.ModalityRouting.__dict__["from_indicators"]
    modeling.MultiwayNetwork.forward = forward
    modeling.ModalityRouting.from_indicators = classmethod(lambda cls, indicators, num_branches=2: indicators)
    try:
        yield
    finally:
        modeling.MultiwayNetwork.forward, modeling.ModalityRouting.from_indicators = saved


def model_batches(backbone, sizes: list[int], task: str) -> dict[int, dict]:
    """Preprocessed scoring batches of pictures of several sizes and aspect ratios, per batch size."""
    from PIL import Image

    rng = np.random.default_rng(0)
    shapes = [(768, 1024), (1024, 768), (500, 500), (300, 900)]
    pictures = [Image.fromarray(rng.integers(0, 256, (*shapes[i % 4], 3), dtype=np.uint8)) for i in range(max(sizes))]
    # The form the engine's workers send (uint8 pixels for OneAlign, normalised on the device).
    return {bs: backbone.transfer_batch([[im] for im in pictures[:bs]], task, "image") for bs in sizes}


def model_alone(backbone, batches: dict[int, dict], repeats: int) -> dict[int, float]:
    """Images/s of ``level_logits`` on preprocessed pixels (median of ``repeats`` timed calls)."""
    import torch

    out = {}
    for bs, batch in batches.items():
        with torch.inference_mode():
            backbone.level_logits(batch)  # warm-up: kernels, allocator
            sync(str(backbone.device))
            times = []
            for _ in range(repeats):
                t = time.perf_counter()
                backbone.level_logits(batch)
                sync(str(backbone.device))
                times.append(time.perf_counter() - t)
        out[bs] = bs / float(np.median(times))
    return out


def preprocessing_cost(backbone, paths: list[Path], task: str) -> tuple[float, float]:
    """Milliseconds per image, in this process: decoding, then building the model inputs."""
    from toolkit.media import open_image

    t = time.perf_counter()
    pictures = [open_image(p) for p in paths]
    decode_s = time.perf_counter() - t
    t = time.perf_counter()
    for i in range(0, len(pictures), 16):
        backbone.scoring_batch([[im] for im in pictures[i : i + 16]], task, "image")
    prep_s = time.perf_counter() - t
    return 1000 * decode_s / len(paths), 1000 * prep_s / len(paths)


def loader_rate(backbone, paths: list[Path], task: str, batch_size: int, workers: int) -> float:
    """Images/s of decoding and building model inputs in DataLoader workers, with no model:
    the most the engine can score with that many workers."""
    from torch.utils.data import DataLoader

    from toolkit.scoring.decode import BatchPreparer, DecodeDataset, detach_preprocessing
    from toolkit.scoring.inputs import collect_inputs

    items = collect_inputs([str(p) for p in paths], False)
    preparer = backbone if workers == 0 else detach_preprocessing(backbone)
    loader = DataLoader(
        DecodeDataset(items),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=BatchPreparer(preparer, items, task),
        prefetch_factor=2 if workers else None,
    )
    t = time.perf_counter()
    for _ in loader:
        pass
    return len(paths) / (time.perf_counter() - t)


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
        raise SystemExit(
            "--random-init needs a OneAlign (mplug_owl2) folder: config.json, tokenizer, preprocessor_config.json"
        )
    config = MPLUGOwl2Config.from_pretrained(path)
    with torch.device(device):
        net = MPLUGOwl2LlamaForCausalLM._from_config(config, dtype=resolve_dtype(dtype, device))
    return OneAlignBackbone(net.eval(), OneAlignProcessor.from_pretrained(path))


def engine_tables(
    backbone,
    args: argparse.Namespace,
    width: int,
    height: int,
    sizes: list[int],
    worker_counts: list[int],
    summary: list[tuple[str, float]],
) -> None:
    """The whole engine on generated JPEG files of one size, against the batch-of-1 loop."""
    from toolkit.scoring import PROB_COLUMNS, Scorer

    with tempfile.TemporaryDirectory() as tmp:
        paths = make_images(Path(tmp), args.images, width, height)
        decode_ms, prep_ms = preprocessing_cost(backbone, paths[: min(len(paths), 32)], args.task)
        print(
            f"\n{len(paths)} images {width}x{height}, task {args.task}; in one process: decoding "
            f"{decode_ms:.1f} ms/image, model inputs (pad, resize, normalise) {prep_ms:.1f} ms/image",
            flush=True,
        )
        base_paths = paths[: args.baseline_images] if args.baseline_images else paths
        baseline_loop(backbone, base_paths[:4], args.task)  # warm-up (lazy inits, kernels)
        base_s, base_probs = min(
            (baseline_loop(backbone, base_paths, args.task) for _ in range(args.repeats)), key=lambda r: r[0]
        )
        base_ips = len(base_paths) / base_s
        summary.append((f"engine {width}x{height}, baseline loop (bs 1)", base_ips))
        print(f"\n{'setting':>28} | {'images/s':>9} | {'vs baseline':>11} | {'max |dp|':>9}")
        print("-" * 68)
        print(f"{'baseline loop (bs 1)':>28} | {base_ips:9.2f} | {1.0:10.2f}x | {0.0:9.1e}", flush=True)
        for workers in worker_counts:
            if args.loader_rate and workers:
                rate = loader_rate(backbone, paths, args.task, max(sizes), workers)
                summary.append((f"{width}x{height} decoding + model inputs alone, {workers} workers", rate))
                print(f"{'inputs alone, workers ' + str(workers):>28} | {rate:9.2f} |", flush=True)
            scorer = Scorer(backbone, progress=False, num_workers=workers)
            for bs in sizes:
                best = float("inf")
                for _ in range(args.repeats):
                    t = time.perf_counter()
                    df = scorer.score(paths, task=args.task, batch_size=bs)
                    sync(str(backbone.device))
                    best = min(best, time.perf_counter() - t)
                probs = df[list(PROB_COLUMNS)].to_numpy(float)[: len(base_paths)]
                diff = np.abs(probs - base_probs).max()
                ips = len(paths) / best
                label = f"Scorer batch {bs}, workers {workers}"
                summary.append((f"engine {width}x{height}, {label}", ips))
                print(f"{label:>28} | {ips:9.2f} | {ips / base_ips:10.2f}x | {diff:9.1e}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny", help="model folder or 'tiny'")
    ap.add_argument("--adapter", default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--task", default="quality")
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument(
        "--size",
        default="512x384",
        help="WIDTHxHEIGHT of the generated images; a list (1024x768,448x448) repeats the engine tables",
    )
    ap.add_argument("--batch-sizes", default="1,2,4,8,16")
    ap.add_argument("--num-workers", default="0", help="DataLoader workers, one value or a list such as 0,8")
    ap.add_argument("--repeats", type=int, default=2, help="timed passes per setting (best is reported)")
    ap.add_argument(
        "--baseline-images",
        type=int,
        default=None,
        help="run the batch-of-1 baseline on the first N images only (it is slow on big models)",
    )
    ap.add_argument(
        "--model-batch-sizes",
        default="",
        help="also time the model alone on preprocessed pixels at these batch sizes (e.g. 1,8,16,32)",
    )
    ap.add_argument("--model-repeats", type=int, default=5, help="timed calls per model-alone setting (median)")
    ap.add_argument(
        "--loader-rate",
        action="store_true",
        help="also time decoding + model inputs in the workers alone (no model): the engine's ceiling",
    )
    ap.add_argument(
        "--compare-masked",
        action="store_true",
        help="model alone also with the reference code's per-module mask selection (before/after)",
    )
    ap.add_argument(
        "--random-init",
        action="store_true",
        help="OneAlign folder without weights: random weights from its config.json (throughput only)",
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads; on a loaded shared machine 1 avoids OpenMP spin contention",
    )
    args = ap.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    from toolkit.models.loading import load_backbone

    image_sizes = [tuple(int(v) for v in size.lower().split("x")) for size in args.size.split(",") if size]
    sizes = [int(b) for b in args.batch_sizes.split(",") if b]
    worker_counts = [int(w) for w in str(args.num_workers).split(",") if w]
    model_sizes = [int(b) for b in args.model_batch_sizes.split(",") if b]
    t0 = time.perf_counter()
    if args.random_init:
        backbone = random_onealign(args.model, args.dtype, args.device)
    else:
        backbone = load_backbone(args.model, args.adapter, args.dtype, args.device)
    sync(args.device)
    load_s = time.perf_counter() - t0
    params = sum(p.numel() for p in backbone.model.parameters())
    print(
        f"model {args.model} ({params / 1e6:.2f} M parameters) on {backbone.device}, {args.dtype}; "
        f"loaded in {load_s:.1f} s; torch threads {torch.get_num_threads()}",
        flush=True,
    )
    if str(backbone.device).startswith("cuda"):
        print(f"device {torch.cuda.get_device_name(backbone.device)}, torch {torch.__version__}", flush=True)

    summary: list[tuple[str, float]] = []
    if model_sizes:
        batches = model_batches(backbone, model_sizes, args.task)
        tables = {"routed": model_alone(backbone, batches, args.model_repeats)}
        if args.compare_masked:
            try:
                with masked_selection():
                    tables["masked"] = model_alone(backbone, batches, args.model_repeats)
            except Exception as exc:  # the figures of the current code still get printed
                print(f"masked-selection run failed: {type(exc).__name__}: {exc}")
        del batches
        print("\nmodel alone (preprocessed pixels; copy to device, vision, abstractor, merge, LLM), images/s")
        print(
            f"{'batch':>6} | "
            + " | ".join(f"{name:>10}" for name in tables)
            + (" | routed/masked" if "masked" in tables else "")
        )
        for bs in model_sizes:
            row = f"{bs:>6} | " + " | ".join(f"{tables[name][bs]:10.1f}" for name in tables)
            if "masked" in tables:
                row += f" | {tables['routed'][bs] / tables['masked'][bs]:12.2f}x"
            print(row, flush=True)
        for name, table in tables.items():
            best = max(table, key=table.get)
            summary.append((f"model alone, {name} selection, best batch {best}", table[best]))

    for width, height in image_sizes:
        engine_tables(backbone, args, width, height, sizes, worker_counts, summary)

    print("\nsummary (images/s)")
    for label, ips in summary:
        print(f"  {label:<52} {ips:9.1f}")


if __name__ == "__main__":
    main()
