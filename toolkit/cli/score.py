"""``qalign score``: Q-Align scores for images or videos, written to a CSV.

Several processes (one per GPU) share a run when it is started through accelerate::

    accelerate launch --multi_gpu --num_processes 4 -m toolkit.cli score --model one-align --out scores.csv photos/

(or ``torchrun --nproc_per_node 4 -m toolkit.cli score --device cpu ...`` on CPUs). Each process
scores its own block of the inputs (whole shards of tar/Parquet inputs) into its part
``scores.csv.partRRR-of-WWW`` and the main process merges the parts into ``scores.csv`` in input
order; only the main process prints the summary. With ``--no-merge`` the processes never wait for
each other (many nodes, array jobs): each prints its own line and ``--merge-only`` joins the parts.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.markup import escape

from toolkit.cli.common import console, err_console
from toolkit.qalign import Task

if TYPE_CHECKING:
    import pandas as pd

    from toolkit.scoring.shards import MergeReport


def register(app: typer.Typer) -> None:
    app.command("score")(score_command)


def score_command(
    inputs: list[str] = typer.Argument(
        ...,
        help="Image/video files, folders (searched recursively), CSV/JSON manifests "
        "(column image, img_path or path; optional gt_score), or shards of images: WebDataset .tar files, "
        ".parquet files, datasets folders (save_to_disk). A quoted pattern ('shards/*.tar') is expanded.",
    ),
    model: str = typer.Option(
        ..., "--model", help="Model folder (OneAlign or any Hugging Face image-text-to-text checkpoint), or 'tiny'."
    ),
    adapter: Optional[Path] = typer.Option(None, "--adapter", help="LoRA adapter folder to apply on top of --model."),
    task: Task = typer.Option("quality", "--task", help="What to rate."),
    video: bool = typer.Option(False, "--video", help="Inputs are videos: video files, or folders of frame images."),
    video_as_frames: bool = typer.Option(
        False,
        "--video-as-frames",
        help="Give videos to the model as their frames, one image each, even where it reads videos natively "
        "(Qwen2-VL, Qwen2.5-VL, Qwen3-VL, Qwen3.5, SmolVLM2, InternVL, LLaVA-OneVision do by default; "
        "other models always read frames). "
        "Score as the model was trained: add it for a model fine-tuned with --video-as-frames.",
    ),
    dtype: str = typer.Option(
        "float32", "--dtype", help="float32, bfloat16, float16 or auto (bfloat16 where the GPU has it)."
    ),
    out: Path = typer.Option(..., "--out", help="Output CSV; if it exists, inputs already scored there are skipped."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Inputs per forward pass."),
    attention: Optional[str] = typer.Option(
        None,
        "--attention",
        help="Attention kernels: sdpa, eager, flash_attention_2, flash_attention_3 or flex_attention "
        "(default: the model's own choice, SDPA where it supports it). Scores stay within float rounding.",
    ),
    compile_mode: str = typer.Option(
        "off",
        "--compile",
        help="torch.compile the fixed-shape image path: off, auto (CUDA graphs on a GPU), default, reduce-overhead, "
        "max-autotune or max-autotune-no-cudagraphs. Compiling takes seconds to minutes before the first batch.",
    ),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
    num_workers: Optional[int] = typer.Option(
        None,
        "--num-workers",
        min=0,
        help="Decoding worker processes (0 = decode in the main process). "
        "Default: 0 on a CPU, most of the cores (up to 16) on a GPU.",
    ),
    max_frames: Optional[int] = typer.Option(
        None,
        "--max-frames",
        min=1,
        help="Cap on frames per video (uniform subsample of the 1 fps frames; a model that reads "
        "videos natively is told the frames' real times).",
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    image_column: str = typer.Option(
        "image", "--image-column", help="Column of Parquet/datasets shards holding the images ({bytes, path} or bytes)."
    ),
    id_column: Optional[str] = typer.Option(
        None, "--id-column", help="Column of Parquet/datasets shards naming each row (default: the row number)."
    ),
    merge: bool = typer.Option(
        True,
        "--merge/--no-merge",
        help="Under several processes (torchrun, accelerate launch): the main process joins the parts into OUT "
        "at the end. --no-merge: each process writes OUT.partRRR-of-WWW and exits without waiting for the others "
        "(no process group; RANK and WORLD_SIZE say which part); join them later with --merge-only.",
    ),
    merge_only: bool = typer.Option(
        False,
        "--merge-only",
        help="Load no model and score nothing: join OUT and the parts beside it into OUT in input order, "
        "say which inputs have no row or were scored twice; exit 1 when any is missing. Give the run's inputs, "
        "--model, --adapter, --task and columns: they are checked against OUT.qalign.json.",
    ),
) -> None:
    """Score images or videos with a Q-Align model.

    Writes one CSV row per input: the 1-5 score, the five level probabilities, their entropy,
    and the reason when an input could not be read (the run goes on without it). Beside the CSV,
    OUT.qalign.json records the model, adapter, task and settings (a rerun resumes only when they
    match) and, for videos, whether they went to the model as videos ("native") or as frames;
    OUT.frames.csv says how many of the sampled frames each one decoded.
    Exits with 1 when no input could be scored.
    """
    if merge_only:
        from toolkit.scoring.shards import merge_scores

        report = merge_scores(inputs, out, model, adapter, task, video, image_column, id_column, video_as_frames)
        _print_merge(report)
        return
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
        image_column=image_column,
        id_column=id_column,
        merge=merge,
        video_as_frames=video_as_frames,
        attention=attention,
        compile_mode=compile_mode,
    )
    if df.attrs.get("speed"):
        console.print(f"speed switches: {df.attrs['speed']}")
    if df.attrs.get("part"):
        _print_part(df)
        return
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
    if video:
        summary += f", videos {_VIDEO_INPUT.get(df.attrs.get('video_input'), 'as frames')}"
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


_VIDEO_INPUT = {"native": "read natively", "frames": "as frames"}


def _print_part(df: pd.DataFrame) -> None:
    """The line of one process of a run that does not merge (each prints its own)."""
    rank, world = df.attrs["rank"]
    scored = df["score"].notna()
    console.print(
        f"process {rank} of {world}: {int(scored.sum())} of {len(df)} input(s) scored"
        f" -> {df.attrs['part']} (join the parts with --merge-only once every process is done)",
        markup=False,
        highlight=False,
        soft_wrap=True,  # whole paths, never broken across lines
    )
    if len(df) and not scored.any():
        err_console.print(f"error: none of the {len(df)} input(s) could be scored", style="red", highlight=False)
        raise typer.Exit(1)


def _print_merge(report: MergeReport) -> None:
    console.print(
        f"{report.scored} of {report.inputs} input(s) scored, {report.failed} failed, {len(report.missing)} missing"
        f" (from {len(report.parts)} part(s)) -> {report.out}",
        markup=False,
        highlight=False,
        soft_wrap=True,  # whole paths, never broken across lines
    )
    if report.others:
        console.print(f"{report.others} row(s) for paths not among the inputs kept after them", highlight=False)
    if report.duplicated:
        console.print(f"[yellow]{len(report.duplicated)} input(s) were scored in more than one part (one row kept):[/]")
        for key in report.duplicated[:10]:
            console.print(f"  {key}", markup=False, highlight=False, soft_wrap=True)
    if report.missing:
        err_console.print(
            f"error: {len(report.missing)} input(s) have no row; the parts are kept (run the missing processes"
            " again, then merge again):",
            style="red",
            highlight=False,
        )
        for key in report.missing[:10]:
            err_console.print(f"  {key}", markup=False, highlight=False, soft_wrap=True)
        if len(report.missing) > 10:
            err_console.print(
                f"  ... and {len(report.missing) - 10} more", markup=False, highlight=False, soft_wrap=True
            )
        raise typer.Exit(1)
    if report.inputs and not report.scored:
        err_console.print(f"error: none of the {report.inputs} input(s) could be scored", style="red", highlight=False)
        raise typer.Exit(1)
