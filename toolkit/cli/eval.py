"""``qalign eval``: score CSVs + ground truth -> a report folder (Markdown, JSON, scatter plots)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from toolkit.cli.common import console


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)


def eval_command(
    scores: List[Path] = typer.Argument(..., help="Score CSVs as written by 'qalign score' (columns path, score, ...); one per model."),
    out: Path = typer.Option(..., "--out", help="Report folder (report.md, report.json, scatter_*.png)."),
    gt: Optional[Path] = typer.Option(None, "--gt", help="Ground truth: MOS table, vote counts, raw votes or Q-Align JSON. Default: the gt_score column of the score CSVs."),
    name: Optional[List[str]] = typer.Option(None, "--name", help="Name of each score CSV, in order (default: file names), e.g. --name before --name after."),
    score_col: Optional[str] = typer.Option(None, "--score-col", help="Column holding the predictions (default: score)."),
    mos_col: Optional[str] = typer.Option(None, "--mos-col", help="MOS column of the ground truth (default: mos, gt_score, score, ...)."),
    boot: int = typer.Option(1000, "--boot", min=1, help="Bootstrap draws per coefficient."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap."),
    confidence: float = typer.Option(0.95, "--confidence", min=0.5, max=0.999, help="Confidence level of the intervals."),
    noise_ceiling: Optional[float] = typer.Option(None, "--noise-ceiling", help="Inter-rater split-half SRCC to show as the noise ceiling."),
    title: str = typer.Option("Agreement with human ratings", "--title", help="Report title."),
) -> None:
    """Measure how well predicted scores agree with the MOS and write a report.

    SRCC, KRCC, PLCC and RMSE (raw and after the 4-parameter logistic) with bootstrap intervals;
    every later score file is compared with the first by a paired bootstrap.
    """
    from toolkit.evaluation import load_evaluation_inputs, write_report

    gt_options = {"columns": {"mos": mos_col}} if mos_col else {}
    aligned = load_evaluation_inputs(list(scores), gt, names=list(name) if name else None, score_col=score_col, gt_options=gt_options)
    with console.status(f"bootstrapping {len(aligned.items)} items x {boot} draws ..."):
        report = write_report(
            out, aligned.predictions, aligned.mos, items=aligned.items, noise_ceiling=noise_ceiling,
            n_boot=boot, seed=seed, confidence=confidence, title=title, notes=aligned.notes,
        )
    from rich.table import Table

    grid = Table("set", "n", "SRCC", "KRCC", "PLCC raw", "PLCC logistic", "RMSE logistic")
    for set_name, res in report.results.items():
        grid.add_row(
            set_name, str(res.n),
            *(f"{res[m].value:.4f} [{res[m].ci_low:.3f}, {res[m].ci_high:.3f}]" for m in ("srcc", "krcc", "plcc", "plcc_logistic", "rmse_logistic")),
        )
    console.print(grid)
    for comp in report.comparisons:
        d = comp.differences["srcc"]
        console.print(f"{comp.b} - {comp.a}: SRCC {d.diff:+.4f} [{d.ci_low:+.4f}, {d.ci_high:+.4f}], p = {d.p_value:.3f}")
    for note in report.notes:
        console.print(f"note: {note}", markup=False, highlight=False)
    console.print(f"wrote {report.out_dir / 'report.md'}", markup=False, highlight=False)
