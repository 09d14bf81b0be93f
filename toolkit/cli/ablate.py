"""``qalign ablate``: levels vs soft labels vs direct scores, trained and compared on one split."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from toolkit.cli.common import console


def register(app: typer.Typer) -> None:
    app.command("ablate")(ablate_command)


def ablate_command(
    model: str = typer.Option("tiny", "--model", help="Base model: 'tiny', a checkpoint folder, a OneAlign folder or a hub id."),
    train_data: Path = typer.Option(..., "--train", help="Training conversations (JSON or save_to_disk folder) with level answers."),
    test: Path = typer.Option(..., "--test", help="Held-out conversations with gt_score (or level_probs): the items every arm is scored on."),
    images: Optional[Path] = typer.Option(None, "--images", help="Media folder of --train (and of --test unless --test-images)."),
    test_images: Optional[Path] = typer.Option(None, "--test-images", help="Media folder of --test."),
    out: Path = typer.Option(..., "--out", help="Output folder: report.md/json, scatter plots, predictions.csv and one training run per arm in runs/."),
    losses: List[str] = typer.Option(["ce", "soft", "score"], "--loss", help="Arms to compare (repeat; default all three). The first is the reference of the paired comparisons."),
    recipe: Optional[str] = typer.Option(None, "--recipe", help="Training preset for every arm (onealign-lora, hf-lora, ...)."),
    mode: Optional[str] = typer.Option(None, "--mode", help="lora or full (default: the recipe's, else lora)."),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="Optimizer steps per arm (default: --epochs)."),
    epochs: Optional[float] = typer.Option(None, "--epochs", min=0, help="Passes over the training data per arm (default 3)."),
    lr: Optional[float] = typer.Option(None, "--lr", min=0, help="Peak learning rate (default: the mode's or recipe's)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Examples per step and device (default 8)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed shared by every arm (default 0)."),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="float32, bf16, fp16 or auto."),
    device: Optional[str] = typer.Option(None, "--device", help="auto (default), cpu, cuda or mps."),
    cpu_threads: Optional[int] = typer.Option(None, "--cpu-threads", min=1, help="torch CPU threads."),
    n_boot: int = typer.Option(1000, "--n-boot", min=100, help="Bootstrap draws of the report's intervals and paired tests."),
) -> None:
    """Train one model per target (level words, soft labels, numeric scores) with the same budget,
    score the same held-out items with each, and write a report comparing them.

    This is the Q-Align paper's ablation (levels beat scores) run on your own data.
    """
    from toolkit.evaluation import write_report
    from toolkit.training import TrainConfig
    from toolkit.training.ablation import run_ablation

    settings = dict(model=model, data=str(train_data), images=str(images) if images else None, recipe=recipe, mode=mode,
                    max_steps=steps, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, dtype=dtype, device=device,
                    cpu_threads=cpu_threads)  # fmt: skip
    base = TrainConfig.from_dict({k: v for k, v in settings.items() if v is not None})
    result = run_ablation(base, test, out, test_images=test_images, losses=losses, log=console.print)
    report = write_report(
        result.out_dir, result.predictions, result.mos, items=result.items, n_boot=n_boot, seed=base.seed,
        title="Ablation: level words vs soft labels vs direct scores", notes=result.notes,
    )  # fmt: skip
    for name, agreement in report.results.items():
        console.print(f"  {name}: SRCC {agreement['srcc'].value:.3f}, PLCC {agreement['plcc'].value:.3f}")
    for comp in report.comparisons:
        d = comp.differences["srcc"]
        console.print(f"  {comp.b} - {comp.a}: SRCC {d.diff:+.3f} [{d.ci_low:+.3f}, {d.ci_high:+.3f}], p {d.p_value:.3f}")
    console.print(f"report -> [bold]{result.out_dir / 'report.md'}[/]")
