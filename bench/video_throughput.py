"""Video scoring throughput: generated 8-second 540p H.264 clips through the engine with ``video=True``.

Each clip is sampled at one frame per second (the Q-Align rule), so an 8-second clip gives 8 frames
that go to the model together at one placeholder. Printed per model:

* the engine: videos/s and frames/s of ``Scorer.score(clips, video=True)``, decoding with decord and
  preparing the model inputs in ``--num-workers`` DataLoader workers;
* the model alone: the same clips' model inputs prepared once and scored again and again (copy to the
  device, vision, abstractor, LLM), and the engine's frames/s as a share of it;
* decoding alone: decord in one worker process (no model, no preprocessing), frames/s and videos/s,
  then with the model inputs built as well: what one worker supplies.

Examples::

    python bench/video_throughput.py                       # 6 clips, tiny model and OneAlign fixture, CPU
    python bench/video_throughput.py --models /path/to/one-align --random-init --device cuda \\
        --dtype bfloat16 --videos 96 --batch-size 8 --num-workers 14

Generating the clips (libx264, ``--preset``) takes about a second per clip on one core; ``--clips DIR``
keeps them for later runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling bench scripts
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_clips(
    folder: Path, n: int, width: int, height: int, seconds: int, fps: int, preset: str, processes: int = 1
) -> list[Path]:
    """H.264 MP4 clips of moving gradients plus noise (so the encoder has real work and decoding
    costs what it does on camera footage), ``processes`` at a time. Existing files are reused."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"clip{i:04d}_{width}x{height}_{seconds}s.mp4" for i in range(n)]
    jobs = [(p, i, width, height, seconds, fps, preset) for i, p in enumerate(paths) if not p.is_file()]
    if processes > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=processes) as pool:
            list(pool.map(_make_clip, *zip(*jobs)))
    else:
        for job in jobs:
            _make_clip(*job)
    return paths


def _make_clip(path: Path, i: int, width: int, height: int, seconds: int, fps: int, preset: str) -> None:
    import av

    rng = np.random.default_rng(i)
    noise = rng.normal(0, 12, (height, width, 3)).astype(np.float32)
    xs, ys = np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32)
    tmp = path.with_suffix(".part.mp4")
    with av.open(str(tmp), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"preset": preset, "crf": "23"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for t in range(seconds * fps):
            phase = (t + 7 * i) / fps
            base = np.sin(xs / (30 + i) + phase)[None, :] * 50 + np.cos(ys / (25 + i) - phase)[:, None] * 50 + 128
            shift = (t * 3) % width
            frame = np.clip(base[..., None] + np.roll(noise, shift, axis=1), 0, 255).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    tmp.rename(path)


def decode_in_worker(paths: list[str], prepare: bool) -> tuple[float, int]:
    """In a worker process: seconds to decode ``paths`` with decord (and build OneAlign-size model
    inputs when ``prepare``), and the frames decoded."""
    import torch

    torch.set_num_threads(1)  # as in a DataLoader worker
    from toolkit.media import load_video_frames

    processor = None
    if prepare:
        from engine_profile import FIXTURE

        from toolkit.models.onealign import OneAlignProcessor
        from toolkit.models.onealign.processing import ImageSettings

        base = OneAlignProcessor.from_pretrained(FIXTURE)
        processor = OneAlignProcessor(base.tokenizer, ImageSettings())  # 448 px, as the real model
    load_video_frames(paths[0], backend="decord")  # library load, first-file costs
    frames = 0
    t = time.perf_counter()
    for p in paths:
        video = load_video_frames(p, backend="decord")
        frames += len(video.frames)
        if processor is not None:
            processor.preprocess(video.frames, normalize=False)
    return time.perf_counter() - t, frames


def worker_rates(paths: list[Path], prepare: bool) -> tuple[float, float]:
    """(frames/s, videos/s) of one worker process."""
    with ProcessPoolExecutor(max_workers=1) as pool:
        seconds, frames = pool.submit(decode_in_worker, [str(p) for p in paths], prepare).result()
    return frames / seconds, len(paths) / seconds


def model_alone(backbone, paths: list[Path], batch_size: int, repeats: int, device: str) -> tuple[float, int]:
    """Videos/s of ``level_logits`` on the clips' prepared inputs, and frames per clip."""
    import torch
    from engine_profile import sync

    from toolkit.media import load_video_frames

    clips = [load_video_frames(p).frames for p in paths[:batch_size]]
    while len(clips) < batch_size:
        clips.append(clips[len(clips) % len(paths)])
    batch = backbone.transfer_batch(clips, "quality", "video")
    times = []
    with torch.inference_mode():
        backbone.level_logits(batch)  # warm-up
        sync(device)
        for _ in range(repeats):
            t = time.perf_counter()
            backbone.level_logits(batch)
            sync(device)
            times.append(time.perf_counter() - t)
    return batch_size / float(np.median(times)), len(clips[0])


def engine_rate(backbone, paths: list[Path], args: argparse.Namespace) -> tuple[float, int]:
    """Videos/s of the whole engine (best of ``--repeats``) and the frames it scored."""
    from engine_profile import sync

    from toolkit.scoring import Scorer

    scorer = Scorer(backbone, batch_size=args.batch_size, num_workers=args.num_workers, progress=False)
    scorer.score(paths[: args.batch_size], video=True)  # warm-up: lazy inits, worker start-up paths
    best, frames = float("inf"), 0
    for _ in range(args.repeats):
        t = time.perf_counter()
        df = scorer.score(paths, video=True)
        sync(args.device)
        best = min(best, time.perf_counter() - t)
        if (df["error"] != "").any():
            raise SystemExit(f"scoring failed: {df.loc[df['error'] != '', 'error'].iloc[0]}")
        frames = sum(decoded for decoded, _ in df.attrs["frames"].values())
    return len(paths) / best, frames


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="tiny,onealign-fixture", help="as in bench/engine_profile.py")
    ap.add_argument("--random-init", action="store_true", help="a OneAlign folder's config with random weights")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--videos", type=int, default=6)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--size", default="960x540", help="WIDTHxHEIGHT of the clips")
    ap.add_argument("--preset", default="veryfast", help="libx264 preset of the generated clips")
    ap.add_argument("--gen-processes", type=int, default=1, help="processes encoding the clips")
    ap.add_argument("--clips", default=None, help="folder to keep the generated clips in (reused when present)")
    ap.add_argument("--batch-size", type=int, default=4, help="videos per forward")
    ap.add_argument("--num-workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2, help="engine passes (best is reported)")
    ap.add_argument("--model-repeats", type=int, default=3)
    ap.add_argument("--attention", default=None)
    ap.add_argument("--compile", default="off")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()

    import torch
    from engine_profile import load

    from toolkit.scoring.compile import apply_speed_options

    if args.threads:
        torch.set_num_threads(args.threads)
    width, height = (int(v) for v in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.clips) if args.clips else Path(tmp)
        t = time.perf_counter()
        paths = make_clips(folder, args.videos, width, height, args.seconds, args.fps, args.preset, args.gen_processes)
        size_mb = sum(p.stat().st_size for p in paths) / len(paths) / 1e6
        print(
            f"{len(paths)} clips {width}x{height}, {args.seconds} s at {args.fps} fps, H.264 {args.preset} "
            f"({size_mb:.1f} MB each) ready in {time.perf_counter() - t:.1f} s; device {args.device}, {args.dtype}, "
            f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores",
            flush=True,
        )
        decode_fps, decode_vps = worker_rates(paths, prepare=False)
        prep_fps, prep_vps = worker_rates(paths, prepare=True)
        print(
            f"one worker, decord decoding alone: {decode_fps:.1f} frames/s ({decode_vps:.2f} videos/s); "
            f"with 448 px model inputs: {prep_fps:.1f} frames/s ({prep_vps:.2f} videos/s); "
            f"load average {os.getloadavg()[0]:.1f}",
            flush=True,
        )
        print(
            f"\n{'model':>18} | {'videos/s':>8} | {'frames/s':>8} | {'alone v/s':>9} | {'alone f/s':>9} | "
            f"{'engine/alone':>12} | load"
        )
        print("-" * 92)
        for name in [m for m in args.models.split(",") if m]:
            backbone = load(name, args)
            report = apply_speed_options(backbone, args.attention, args.compile, warmup=None)
            if report.notes:
                print(f"{name}: {report.summary()}")
            alone_vps, per_clip = model_alone(backbone, paths, args.batch_size, args.model_repeats, args.device)
            vps, frames = engine_rate(backbone, paths, args)
            fps = frames / len(paths) * vps
            alone_fps = alone_vps * per_clip
            print(
                f"{name[-18:]:>18} | {vps:8.2f} | {fps:8.1f} | {alone_vps:9.2f} | {alone_fps:9.1f} | "
                f"{100 * fps / alone_fps:11.0f}% | {os.getloadavg()[0]:.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
