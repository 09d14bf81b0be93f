"""``qalign ablate``: levels vs soft labels vs direct scores, trained and compared on one split."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.markup import escape

from toolkit.cli.common import console
from toolkit.cli.train_options import config_options, config_values, with_options


def register(app: typer.Typer) -> None:
    app.command("ablate")(with_options(ablate_command, ABLATE_OPTIONS, before=6))


PER_ARM = (
    "data",
    "images",
    "out",
    "loss",
    "weights",
    "eval_data",
    "eval_images",
    "eval_every",
    "eval_batch_size",
    "save_every",
    "keep_checkpoints",
    "resume",
    "best_metric",
    "log_every",
)
"""Training settings that are no options here: the data and its media folder (options of their own,
as they also describe the test data), and what the ablation sets for each arm itself (its loss and
output folder; no held-out evaluations, checkpoints or progress reports during training)."""

ABLATE_OPTIONS = config_options(exclude=PER_ARM, rename={"max_steps": "steps"})
"""The training settings every arm shares; ``--steps`` is ``max_steps``, as it was first named here."""


def ablate_command(
    train_data: Path = typer.Option(
        ..., "--train", help="Training conversations (JSON or save_to_disk folder) with level answers."
    ),
    test: Path = typer.Option(
        ..., "--test", help="Held-out conversations with gt_score (or level_probs): the items every arm is scored on."
    ),
    images: Optional[Path] = typer.Option(
        None, "--images", help="Media folder of --train (and of --test unless --test-images)."
    ),
    test_images: Optional[Path] = typer.Option(None, "--test-images", help="Media folder of --test."),
    out: Path = typer.Option(
        ...,
        "--out",
        help="Output folder: report.md/json, scatter plots, predictions.csv and one training run per arm in runs/.",
    ),
    losses: list[str] = typer.Option(
        ["ce", "soft", "score"],
        "--loss",
        help="Arms to compare (repeat; default all three). The first is the reference of the paired comparisons.",
    ),
    n_boot: int = typer.Option(
        1000, "--n-boot", min=100, help="Bootstrap draws of the report's intervals and paired tests."
    ),
    **options: Any,
) -> None:
    """Train one model per target (level words, soft labels, numeric scores) with the same budget,
    score the same held-out items with each, and write a report comparing them.

    This is the Q-Align paper's ablation (levels beat scores) run on your own data.
    """
    from toolkit.evaluation import write_report
    from toolkit.training import TrainConfig
    from toolkit.training.ablation import SUMMARY_JSON, run_ablation

    data = {"data": str(train_data), "images": str(images) if images else None}
    base = TrainConfig.from_dict({**config_values(ABLATE_OPTIONS, options), **data})
    result = run_ablation(
        base,
        test,
        out,
        test_images=test_images,
        losses=losses,
        log=lambda line: console.print(line, markup=False, highlight=False),
    )
    report = write_report(
        result.out_dir,
        result.predictions,
        result.mos,
        items=result.items,
        n_boot=n_boot,
        seed=base.seed,
        title="Ablation: level words vs soft labels vs direct scores",
        notes=result.notes,
        # run_ablation checked and filled this folder; its summary marks it as toolkit output.
        overwrite=True,
        legacy=(SUMMARY_JSON,),
    )
    for name, agreement in report.results.items():
        console.print(f"  {name}: SRCC {agreement['srcc'].value:.3f}, PLCC {agreement['plcc'].value:.3f}")
    for comp in report.comparisons:
        d = comp.differences["srcc"]
        console.print(
            f"  {comp.b} - {comp.a}: SRCC {d.diff:+.3f} [{d.ci_low:+.3f}, {d.ci_high:+.3f}], p {d.p_value:.3f}"
        )
    console.print(f"report -> [bold]{escape(str(result.out_dir / 'report.md'))}[/]")
