"""``qalign train``: fine-tune a backbone on Q-Align conversations (LoRA adapter or full model).

Settings come from the options, from a ``--config`` JSON/YAML file (keys as in ``TrainConfig``),
or both; an option given on the command line wins over the file. The same command runs on
several GPUs through accelerate::

    accelerate launch --multi_gpu --num_processes 4 -m toolkit.cli train --config recipe.yaml
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from toolkit.cli.common import console


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)


def train_command(
    model: Optional[str] = typer.Option(None, "--model", help="Base model: 'tiny' (the default), a checkpoint folder, or a OneAlign folder."),
    data: Optional[Path] = typer.Option(None, "--data", help="Conversation JSON, or a dataset folder saved with save_to_disk."),
    images: Optional[Path] = typer.Option(None, "--images", help="Folder that relative media paths are resolved against (default: the JSON's folder)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder: the LoRA adapter (lora) or the whole model (full)."),
    mode: Optional[str] = typer.Option(None, "--mode", help="lora (default) or full."),
    epochs: Optional[float] = typer.Option(None, "--epochs", min=0, help="Passes over the data (default 3)."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", min=1, help="Optimizer steps; overrides --epochs."),
    lr: Optional[float] = typer.Option(None, "--lr", min=0, help="Peak learning rate (default 2e-4 for lora, 2e-5 for full)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Examples per micro-batch and device (default 8)."),
    grad_accum: Optional[int] = typer.Option(None, "--grad-accum", min=1, help="Micro-batches per optimizer step (default 1)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of adapter initialisation, shuffling and dropout (default 0)."),
    lora_r: Optional[int] = typer.Option(None, "--lora-r", min=1, help="LoRA rank (default 8)."),
    lora_alpha: Optional[int] = typer.Option(None, "--lora-alpha", min=1, help="LoRA alpha (default 16)."),
    eval_data: Optional[Path] = typer.Option(None, "--eval-data", help="Held-out conversations: loss and SRCC logged before, during and after training."),
    eval_every: Optional[int] = typer.Option(None, "--eval-every", min=0, help="Optimizer steps between held-out evaluations (0: before and after only)."),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="float32 (default), bf16 or fp16 mixed precision."),
    device: Optional[str] = typer.Option(None, "--device", help="auto (default), cpu, cuda or mps."),
    num_workers: Optional[int] = typer.Option(None, "--num-workers", min=0, help="DataLoader processes preparing batches (default 0; 4-8 keep a GPU busy)."),
    cpu_threads: Optional[int] = typer.Option(None, "--cpu-threads", min=1, help="torch CPU threads (1 is fastest for tiny models on busy machines)."),
    config: Optional[Path] = typer.Option(None, "--config", help="JSON or YAML file of TrainConfig settings."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Fine-tune a Q-Align model on conversation data and save the adapter or the model.

    A LoRA run writes a PEFT adapter folder: score with 'qalign score --model BASE --adapter OUT'.
    A full run writes a complete model folder: score with 'qalign score --model OUT'. Either way
    OUT/qalign_train.json records the settings, the loss per step and the held-out results.
    """
    from toolkit.errors import InputError
    from toolkit.training import TrainConfig, train

    options: dict[str, Any] = dict(
        model=model, data=str(data) if data else None, images=str(images) if images else None,
        out=str(out) if out else None, mode=mode, epochs=epochs, max_steps=max_steps, lr=lr,
        batch_size=batch_size, grad_accum=grad_accum, seed=seed, lora_r=lora_r, lora_alpha=lora_alpha,
        eval_data=str(eval_data) if eval_data else None, eval_every=eval_every, dtype=dtype, device=device,
        num_workers=num_workers, cpu_threads=cpu_threads,
    )  # fmt: skip
    if config is not None:
        cfg = TrainConfig.from_file(config, **options)
    else:
        cfg = TrainConfig.from_dict({k: v for k, v in options.items() if v is not None})
    if not cfg.data:
        raise InputError("no training data: give --data (or 'data' in --config)")
    if out is None and (config is None or "out" not in _file_keys(config)):
        raise InputError("no output folder: give --out (or 'out' in --config)")

    result = _run(train, cfg, progress)
    if not result.main_process:
        return  # another process of a multi-process run: the main one reports for all
    console.print(
        f"{result.steps} step(s), {result.samples} sample(s) in {result.seconds:.1f} s "
        f"({result.samples_per_s:.1f} samples/s); final loss {result.final_loss:.4f}; "
        f"{result.trainable_parameters:,} of {result.total_parameters:,} parameters trained"
    )
    for h in result.heldout:
        srcc = "n/a" if h.srcc is None else f"{h.srcc:.3f}"
        console.print(f"  held-out at step {h.step}: loss {h.loss:.4f}, SRCC {srcc} ({h.n} items)")
    what = "adapter" if result.mode == "lora" else "model"
    console.print(f"{what} saved -> [bold]{result.output_dir}[/]")


def _file_keys(path: Path) -> set[str]:
    from toolkit.training.config import read_config_file

    return set(read_config_file(path))


def _run(train: Any, cfg: Any, show: bool) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    if not show:
        return train(cfg)
    columns = (
        TextColumn("training"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
        TimeElapsedColumn(), TimeRemainingColumn(),
    )  # fmt: skip
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("train", total=None, loss="-")

        def report(p: Any) -> None:
            bar.update(task, total=p.total_steps, completed=p.step, loss=f"{p.loss:.4f}")
            if p.heldout is not None:
                srcc = "n/a" if p.heldout.srcc is None else f"{p.heldout.srcc:.3f}"
                bar.console.print(f"  step {p.heldout.step}: held-out loss {p.heldout.loss:.4f}, SRCC {srcc}")

        return train(cfg, progress=report)
