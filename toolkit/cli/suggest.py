"""``qalign suggest``: which items raters should rate next (active learning)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from toolkit.cli.common import DbOption, console
from toolkit.qalign import Task


def register(app: typer.Typer) -> None:
    app.command("suggest")(suggest_command)


def suggest_command(
    out: Path = typer.Option(..., "--out", help="Ranked items (CSV, Parquet or JSON by extension)."),
    study: Optional[str] = typer.Option(
        None,
        "--study",
        help="Rank this study's unrated and under-rated test items (its valid votes are the ratings so far).",
    ),
    scores: Optional[Path] = typer.Option(
        None, "--scores", help="Score table from 'qalign score' (path, score, entropy or p_excellent..p_bad)."
    ),
    model: Optional[str] = typer.Option(
        None, "--model", help="Score the study's items with this model instead of --scores (folder, hub id or 'tiny')."
    ),
    adapter: Optional[Path] = typer.Option(None, "--adapter", help="LoRA adapter folder for --model."),
    votes: Optional[Path] = typer.Option(
        None, "--votes", help="Without --study: votes so far (item, rater, vote) for the items of --scores."
    ),
    top: Optional[int] = typer.Option(None, "--top", min=1, help="Keep (and push) only the best N items."),
    push: bool = typer.Option(
        False,
        "--push",
        help="Put the ranked items at the front of the study's assignment queue (replaces an earlier push).",
    ),
    target: Optional[int] = typer.Option(
        None,
        "--target",
        min=1,
        help="Vote target: items with this many votes are not ranked (default: the study's target; "
        "none without a study).",
    ),
    include_complete: bool = typer.Option(
        False,
        "--include-complete",
        help="Rank items that reached the vote target too (raters are not served them unless the target is raised).",
    ),
    w_uncertainty: float = typer.Option(1.0, "--w-uncertainty", min=0.0, help="Weight of the model's level entropy."),
    w_disagreement: float = typer.Option(
        1.0, "--w-disagreement", min=0.0, help="Weight of |score - MOS| in units of the MOS interval."
    ),
    task: Task = typer.Option("quality", "--task", help="What the model rates (with --model)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps (with --model)."),
    dtype: str = typer.Option("float32", "--dtype", help="float32, bfloat16, float16 or auto (with --model)."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Inputs per forward pass (with --model)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar while scoring."),
    db: Optional[str] = DbOption,
) -> None:
    """Rank unrated or under-rated items by model uncertainty and model/rater disagreement.

    priority = w_u * entropy / ln 5 + w_d * d / (1 + d), with d = |score - MOS| / (half-width of
    the MOS's 95% interval); unrated items have d = 0. With --push, raters of the study are served
    the ranked items first (then the least-rated items, as usual) until each reaches the target.
    """
    from toolkit.active import RankingOptions, suggest

    options = RankingOptions(
        uncertainty_weight=w_uncertainty,
        disagreement_weight=w_disagreement,
        target_votes=target,
        include_complete=include_complete,
    )
    result = suggest(
        study,
        db_url=db,
        scores=scores,
        votes=votes,
        model=model,
        adapter=str(adapter) if adapter else None,
        task=task,
        device=device,
        dtype=dtype,
        batch_size=batch_size,
        options=options,
        top=top,
        out=out,
        push=push,
        progress=progress,
    )
    from rich.table import Table

    grid = Table("rank", "item", "priority", "entropy", "score", "MOS", "votes")
    for row in result.ranking.head(10).itertuples(index=False):
        mos = "-" if row.n == 0 else f"{row.mos:.2f}"
        grid.add_row(
            str(row.rank),
            escape(str(row.item)),
            f"{row.priority:.3f}",
            f"{row.entropy:.3f}",
            f"{row.score:.2f}",
            mos,
            str(row.n),
        )
    console.print(grid)
    for note in result.notes:
        console.print(f"note: {note}", markup=False, highlight=False)
    console.print(f"wrote {len(result.ranking)} ranked item(s) to {result.out}", markup=False, highlight=False)
    if push:
        console.print(
            f"pushed {result.pushed} item(s) to the front of study {study}'s queue", markup=False, highlight=False
        )
