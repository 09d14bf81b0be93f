"""``qalign train``: fine-tune a backbone on Q-Align conversations (LoRA adapter or full model).

Settings come from the options, from a ``--config`` JSON/YAML file (keys as in ``TrainConfig``),
from a ``--recipe`` preset, or all three; an option on the command line wins over the file, and
both win over the recipe. The same command runs on several GPUs and nodes through accelerate
(``configs/README.md``)::

    accelerate launch --config_file configs/accelerate_zero3.yaml -m toolkit.cli train --config recipe.yaml
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional

import typer

from toolkit.cli.common import console


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)


def train_command(
    model: Optional[str] = typer.Option(None, "--model", help="Base model: 'tiny' (the default), a checkpoint folder, a OneAlign folder or a hub id."),
    data: Optional[List[Path]] = typer.Option(None, "--data", help="Conversation JSON or save_to_disk dataset folder; repeat for multi-task training (each keeps its prompts)."),
    weights: Optional[str] = typer.Option(None, "--weights", help="Sampling weight per --data, e.g. 2,1 (default: in proportion to their sizes)."),
    images: Optional[List[Path]] = typer.Option(None, "--images", help="Folder that relative media paths are resolved against (default: the JSON's folder); once, or once per --data."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder: the LoRA adapter (lora) or the whole model (full), plus checkpoints/ and best/."),
    recipe: Optional[str] = typer.Option(None, "--recipe", help="Preset: onealign-lora, onealign-full, hf-lora or hf-full (the reference settings)."),
    mode: Optional[str] = typer.Option(None, "--mode", help="lora (default) or full."),
    loss: Optional[str] = typer.Option(None, "--loss", help="ce (level cross-entropy, Q-Align; default), soft (KL to the vote distribution, DeQA-style) or score (numeric answers, the paper's baseline)."),
    epochs: Optional[float] = typer.Option(None, "--epochs", min=0, help="Passes over the data (default 3)."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", min=1, help="Optimizer steps; overrides --epochs."),
    lr: Optional[float] = typer.Option(None, "--lr", min=0, help="Peak learning rate (default 2e-4 for lora, 2e-5 for full)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Examples per micro-batch and device (default 8)."),
    grad_accum: Optional[int] = typer.Option(None, "--grad-accum", min=1, help="Micro-batches per optimizer step (default 1)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of adapter initialisation, sampling order and dropout (default 0)."),
    lora_r: Optional[int] = typer.Option(None, "--lora-r", min=1, help="LoRA rank (default 8; 128 in onealign-lora)."),
    lora_alpha: Optional[int] = typer.Option(None, "--lora-alpha", min=1, help="LoRA alpha (default 16; 256 in onealign-lora)."),
    lora_dropout: Optional[float] = typer.Option(None, "--lora-dropout", min=0, max=0.99, help="LoRA dropout (default 0.05)."),
    eval_data: Optional[Path] = typer.Option(None, "--eval-data", help="Held-out conversations: loss, SRCC and PLCC logged before, during and after training."),
    eval_images: Optional[Path] = typer.Option(None, "--eval-images", help="Media folder of --eval-data."),
    eval_every: Optional[int] = typer.Option(None, "--eval-every", min=0, help="Optimizer steps between held-out evaluations (0: before and after, and at each save)."),
    save_every: Optional[int] = typer.Option(None, "--save-every", min=0, help="Optimizer steps between checkpoints in OUT/checkpoints (0: none)."),
    keep_checkpoints: Optional[int] = typer.Option(None, "--keep-checkpoints", min=1, help="Most recent checkpoints kept (default 1)."),
    resume: Optional[bool] = typer.Option(None, "--resume/--no-resume", help="Continue from the last checkpoint in OUT (a fresh run when there is none)."),
    best_metric: Optional[str] = typer.Option(None, "--best-metric", help="Held-out metric that picks OUT/best: srcc (default), plcc or loss."),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="float32 (default), bf16 or fp16 mixed precision, or auto (bf16 where the GPU has it)."),
    gradient_checkpointing: Optional[bool] = typer.Option(None, "--gradient-checkpointing/--no-gradient-checkpointing", help="Recompute activations in the backward pass (less memory, slower)."),
    device: Optional[str] = typer.Option(None, "--device", help="auto (default), cpu, cuda or mps."),
    num_workers: Optional[int] = typer.Option(None, "--num-workers", min=0, help="DataLoader processes preparing batches (default 0; 4-8 keep a GPU busy)."),
    cpu_threads: Optional[int] = typer.Option(None, "--cpu-threads", min=1, help="torch CPU threads (1 is fastest for tiny models on busy machines)."),
    config: Optional[Path] = typer.Option(None, "--config", help="JSON or YAML file of TrainConfig settings."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Fine-tune a Q-Align model on conversation data and save the adapter or the model.

    A LoRA run writes a PEFT adapter folder: score with 'qalign score --model BASE --adapter OUT',
    or fold it into the base weights with 'qalign merge'. A full run writes a complete model
    folder: score with 'qalign score --model OUT'. Either way OUT/qalign_train.json records the
    settings, the loss per step and the held-out results; OUT/best holds the model of the best
    held-out evaluation, OUT/checkpoints what --resume continues from.
    """
    from toolkit.errors import InputError
    from toolkit.training import TrainConfig, train

    options: dict[str, Any] = dict(
        model=model, data=_paths(data), weights=_weights(weights), images=_paths(images), out=str(out) if out else None,
        recipe=recipe, mode=mode, loss=loss, epochs=epochs, max_steps=max_steps, lr=lr, batch_size=batch_size,
        grad_accum=grad_accum, seed=seed, lora_r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
        eval_data=str(eval_data) if eval_data else None, eval_images=str(eval_images) if eval_images else None,
        eval_every=eval_every, save_every=save_every, keep_checkpoints=keep_checkpoints, resume=resume,
        best_metric=best_metric, dtype=dtype, gradient_checkpointing=gradient_checkpointing, device=device,
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
    if result.resumed_from:
        console.print(f"resumed from {result.resumed_from}")
    console.print(
        f"{result.steps} step(s), {result.samples} sample(s) in {result.seconds:.1f} s "
        f"({result.samples_per_s:.1f} samples/s); final loss {result.final_loss:.4f}; "
        f"{result.trainable_parameters:,} of {result.total_parameters:,} parameters trained"
    )
    if len(result.draws) > 1:
        console.print("  examples drawn per data set: " + ", ".join(f"{p}: {n}" for p, n in zip(cfg.data_paths, result.draws)))
    for h in result.heldout:
        console.print(f"  held-out at step {h.step}: {_heldout_line(h)} ({h.n} items)")
    what = "adapter" if result.mode == "lora" else "model"
    console.print(f"{what} saved -> [bold]{result.output_dir}[/]")
    if result.best is not None:
        b = result.best
        console.print(f"best held-out {b['metric']} {b['value']:.4f} at step {b['step']} -> [bold]{result.output_dir / 'best'}[/]")


def _paths(values: Optional[List[Path]]) -> str | list[str] | None:
    if not values:
        return None
    return str(values[0]) if len(values) == 1 else [str(v) for v in values]


def _weights(text: Optional[str]) -> list[float] | None:
    from toolkit.errors import InputError

    if text is None:
        return None
    try:
        return [float(w) for w in text.split(",")]
    except ValueError:
        raise InputError(f"--weights must be numbers separated by commas, e.g. 2,1; got {text!r}") from None


def _heldout_line(h: Any) -> str:
    def fmt(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    line = f"loss {h.loss:.4f}, SRCC {fmt(h.srcc)}, PLCC {fmt(h.plcc)}"
    if h.kl is not None:
        line += f", KL to votes {h.kl:.3f}"
    if h.failed:
        line += f", {h.failed} without a score"
    return line


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
                bar.console.print(f"  step {p.heldout.step}: held-out {_heldout_line(p.heldout)}")
            if p.checkpoint is not None:
                bar.console.print(f"  step {p.step}: checkpoint -> {p.checkpoint}")

        return train(cfg, progress=report)
