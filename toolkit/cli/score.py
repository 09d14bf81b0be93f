"""``qalign score``: Q-Align scores for images or videos, written to a CSV.

Several processes (one per GPU) share a run when it is started through accelerate::

    accelerate launch --multi_gpu --num_processes 4 -m toolkit.cli score --model one-align --out scores.csv photos/

(or ``torchrun --nproc_per_node 4 -m toolkit.cli score --device cpu ...`` on CPUs). Each process
scores its own block of the inputs and the main process merges the parts into ``scores.csv`` in
input order; only the main process prints the summary.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from toolkit.cli.common import console, err_console
from toolkit.qalign import Task


def register(app: typer.Typer) -> None:
    app.command("score")(score_command)


def score_command(
    inputs: list[str] = typer.Argument(
        ...,
        help="Image/video files, folders (searched recursively) or CSV/JSON manifests "
        "(column image, img_path or path; optional gt_score).",
    ),
    model: str = typer.Option(
        ..., "--model", help="Model folder (OneAlign or any Hugging Face image-text-to-text checkpoint), or 'tiny'."
    ),
    adapter: Optional[Path] = typer.Option(None, "--adapter", help="LoRA adapter folder to apply on top of --model."),
    task: Task = typer.Option("quality", "--task", help="What to rate."),
    video: bool = typer.Option(False, "--video", help="Inputs are videos: video files, or folders of frame images."),
    dtype: str = typer.Option(
        "float32", "--dtype", help="float32, bfloat16, float16 or auto (bfloat16 where the GPU has it)."
    ),
    out: Path = typer.Option(..., "--out", help="Output CSV; if it exists, inputs already scored there are skipped."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Inputs per forward pass."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
    num_workers: Optional[int] = typer.Option(
        None,
        "--num-workers",
        min=0,
        help="Decoding worker processes (0 = decode in the main process). "
        "Default: 0 on a CPU, most of the cores (up to 16) on a GPU.",
    ),
    max_frames: Optional[int] = typer.Option(
        None, "--max-frames", min=1, help="Cap on frames per video (uniform subsample of the 1 fps frames)."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Score images or videos with a Q-Align model.

    Writes one CSV row per input: the 1-5 score, the five level probabilities, their entropy,
    and the reason when an input could not be read (the run goes on without it). Beside the CSV,
    OUT.qalign.json records the model, adapter, task and settings (a rerun resumes only when they
    match) and, for videos, OUT.frames.csv how many of the sampled frames each one decoded.
    Exits with 1 when no input could be scored.
    """
    from toolkit.scoring import score_images

    df = score_images(
        inputs,
        model=model,
        adapter=str(adapter) if adapter else None,
        task=task,
        batch_size=batch_size,
        device=device,
        dtype=dtype,
        num_workers=num_workers,
        max_frames=max_frames,
        video=video,
        progress=progress,
        out=out,
    )
    if not df.attrs.get("main_process", True):
        return  # another process of a multi-process run: the main one reports for all
    notes = df.attrs.get("notes", {})
    if notes:
        console.print(
            f"{len(notes)} video(s) had more 1 fps frames than --max-frames {max_frames} and were subsampled uniformly"
        )
    failed = df[df["error"] != ""]
    scored = df["score"].notna()
    summary = f"{int(scored.sum())} of {len(df)} input(s) scored"
    if scored.any():
        summary += f", mean {task} score {df.loc[scored, 'score'].mean():.3f}"
    console.print(f"{summary} -> [bold]{escape(str(out))}[/]")
    short = {p: c for p, c in df.attrs.get("frames", {}).items() if c[0] < c[1]}
    if short:
        console.print(
            f"[yellow]{len(short)} video(s) decoded fewer frames than their 1 fps sampling asked for"
            " (truncated or damaged files, scored from the frames decoded):[/]"
        )
        for path, (decoded, sampled) in list(short.items())[:10]:
            console.print(f"  {path}: {decoded} of {sampled} frames", markup=False, highlight=False)
        if len(short) > 10:
            console.print(f"  ... and {len(short) - 10} more (see {out}.frames.csv)", markup=False, highlight=False)
    if len(failed):
        console.print(f"[yellow]{len(failed)} input(s) could not be scored:[/]")
        for reason in failed["error"].head(10):
            console.print(f"  {reason}", markup=False, highlight=False)
        if len(failed) > 10:
            console.print(f"  ... and {len(failed) - 10} more (see the error column)")
    if len(df) and not scored.any():
        # Every row is an error row: a wrong path or model would otherwise look like success.
        err_console.print(f"error: none of the {len(df)} input(s) could be scored", style="red", highlight=False)
        raise typer.Exit(1)
