"""``qalign train``: fine-tune a backbone on Q-Align conversations (LoRA adapter or full model).

Settings come from the options, from a ``--config`` JSON/YAML file (keys as in ``TrainConfig``),
from a ``--recipe`` preset, or all three; an option on the command line wins over the file, and
both win over the recipe. The same command runs on several GPUs and nodes through accelerate
(``configs/README.md``)::

    accelerate launch --config_file configs/accelerate_zero3.yaml -m toolkit.cli train --config recipe.yaml
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.markup import escape

from toolkit.cli.common import console
from toolkit.cli.train_options import config_options, config_values, with_options


def register(app: typer.Typer) -> None:
    app.command("train")(with_options(train_command, TRAIN_OPTIONS))


TRAIN_OPTIONS = config_options()
"""One option per TrainConfig setting, named after it (``lora_r``: ``--lora-r``)."""


def train_command(
    config: Optional[Path] = typer.Option(None, "--config", help="JSON or YAML file of TrainConfig settings."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    **options: Any,
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

    settings = config_values(TRAIN_OPTIONS, options)
    if config is not None:
        cfg = TrainConfig.from_file(config, **settings)
    else:
        cfg = TrainConfig.from_dict(settings)
    if not cfg.data:
        raise InputError("no training data: give --data (or 'data' in --config)")
    if "out" not in settings and (config is None or "out" not in _file_keys(config)):
        raise InputError("no output folder: give --out (or 'out' in --config)")

    result = _run(train, cfg, progress)
    if not result.main_process:
        return  # another process of a multi-process run: the main one reports for all
    if result.resumed_from:
        console.print(f"resumed from {result.resumed_from}", markup=False, highlight=False)
    console.print(
        f"{result.steps} step(s), {result.samples} sample(s) in {result.seconds:.1f} s "
        f"({result.samples_per_s:.1f} samples/s); final loss {result.final_loss:.4f}; "
        f"{result.trainable_parameters:,} of {result.total_parameters:,} parameters trained"
    )
    if len(result.draws) > 1:
        console.print(
            "  examples drawn per data set: "
            + ", ".join(f"{escape(str(p))}: {n}" for p, n in zip(cfg.data_paths, result.draws))
        )
    for h in result.heldout:
        console.print(f"  held-out at step {h.step}: {_heldout_line(h)} ({h.n} items)")
    what = "adapter" if result.mode == "lora" else "model"
    console.print(f"{what} saved -> [bold]{escape(str(result.output_dir))}[/]")
    if result.best is not None:
        b = result.best
        console.print(
            f"best held-out {b['metric']} {b['value']:.4f} at step {b['step']} "
            f"-> [bold]{escape(str(result.output_dir / 'best'))}[/]"
        )


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
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    if not show:
        return train(cfg)
    columns = (
        TextColumn("training"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("train", total=None, loss="-")

        def report(p: Any) -> None:
            bar.update(task, total=p.total_steps, completed=p.step, loss=f"{p.loss:.4f}")
            if p.heldout is not None:
                bar.console.print(f"  step {p.heldout.step}: held-out {_heldout_line(p.heldout)}")
            if p.checkpoint is not None:
                bar.console.print(f"  step {p.step}: checkpoint -> {p.checkpoint}", markup=False, highlight=False)

        return train(cfg, progress=report)
