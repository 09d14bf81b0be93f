"""``qalign analyze``: clean a study's votes into per-item scores with a subject model."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.markup import escape

from toolkit.analysis.names import ModelName
from toolkit.cli.common import DbOption, console, err_console

if TYPE_CHECKING:  # kept out of --help: the analysis modules import pandas and scipy
    from toolkit.analysis.pipeline import Analysis


class CiChoice(str, Enum):
    t = "t"
    normal = "normal"


def analyze_command(
    votes: Optional[Path] = typer.Argument(
        None, help="Vote table (CSV, Parquet or JSON), one row per vote. Leave out with --study.", show_default=False
    ),
    model: ModelName = typer.Option(
        "mle_co",
        "--model",
        "-m",
        case_sensitive=False,  # sureal spells them MLE_CO, P913
        help="mos: mean; bt500: BT.500 rejection + mean; p913: P.913 bias removal + rejection; "
        "mle: subject model with content ambiguity; mle_co: subject model without it.",
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Per-item scores: item, score, ci_low, ci_high, n."),
    raters_out: Optional[Path] = typer.Option(
        None, "--raters-out", help="Per-rater table: rater, bias, inconsistency, rejected, reason."
    ),
    report: Optional[Path] = typer.Option(None, "--report", help="Folder for report.md and its PNG plots."),
    item_col: str = typer.Option("item", "--item-col", help="Item column of VOTES."),
    rater_col: str = typer.Option("rater", "--rater-col", help="Rater column of VOTES."),
    vote_col: str = typer.Option("vote", "--vote-col", help="Vote column of VOTES (levels 1-5)."),
    content_col: str = typer.Option(
        "auto",
        "--content-col",
        help="Source-content column (content ambiguity of the mle model); 'auto' takes 'content' or "
        "'content_group' when present, 'none' treats every item as its own content.",
    ),
    study: Optional[str] = typer.Option(None, "--study", help="Analyse this study from the database instead."),
    db: Optional[str] = DbOption,
    ci: CiChoice = typer.Option(CiChoice.t, "--ci", help="Interval of the mean-based models: t, or normal (sureal's)."),
    exclude_flagged: bool = typer.Option(
        False,
        "--exclude-flagged",
        help="Leave raters flagged by the screening (gold, straightlining, speed, agreement) out of the fit.",
    ),
    min_rater_votes: int = typer.Option(2, "--min-rater-votes", help="MLE: raters with fewer votes are left out."),
    splits: int = typer.Option(200, "--splits", help="Random splits for the split-half agreement (0 skips it)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the split-half agreement and the reliability bootstrap."),
    reliability_boot: int = typer.Option(
        1000,
        "--reliability-boot",
        help="Bootstrap replicates (items resampled) for the intervals of Krippendorff's alpha and ICC(2,k); "
        "0 gives the estimates without intervals.",
    ),
    scores: Optional[Path] = typer.Option(
        None,
        "--scores",
        help="Model score file (qalign score output: path, score) for the study's items: adds common_items, "
        "srcc_model, srcc_peers and disagrees_with_both to --raters-out and a section to the report. Paths match "
        "item ids exactly, after normalising separators, by file name, or by file name without extension "
        "(the last two when unique).",
    ),
    scores_min_srcc: float = typer.Option(
        0.4,
        "--scores-min-srcc",
        help="With --scores: flag a rater whose SRCC with the model and with the others' MOS are both below this.",
    ),
    scores_min_items: int = typer.Option(
        20, "--scores-min-items", help="With --scores: common items a rater needs before being flagged."
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Write into an earlier qalign report at --report (never any other non-empty folder)."
    ),
) -> None:
    """Fit a subject model to the votes and write per-item scores (and rater table, report)."""
    from toolkit.analysis.model_agreement import ModelAgreementConfig
    from toolkit.analysis.pipeline import AnalysisOptions, analyze_study, analyze_votes, read_votes
    from toolkit.errors import InputError
    from toolkit.files import claim_output_dir
    from toolkit.io import write_table

    if (votes is None) == (study is None):
        raise InputError("give either a VOTES file or --study NAME (with --db), not both and not neither")
    score_set = None
    if scores is not None:
        from toolkit.evaluation.inputs import read_scores

        score_set = read_scores(scores)  # before the fit: a bad score file costs no time
    if report is not None:
        # Before the fit: a refused folder should cost no time and leave nothing written.
        claim_output_dir(report, overwrite=overwrite, inputs=(votes, scores))
    qa_config = ModelAgreementConfig(
        min_srcc_model=scores_min_srcc, min_srcc_peers=scores_min_srcc, min_items=scores_min_items
    )
    options = AnalysisOptions(
        model=model,
        ci=ci.value,
        min_rater_votes=min_rater_votes,
        item_col=item_col,
        rater_col=rater_col,
        vote_col=vote_col,
        content_col=None if content_col.lower() == "none" else content_col,
        exclude_flagged=exclude_flagged,
        agreement_splits=splits,
        seed=seed,
        reliability_boot=reliability_boot,
    )
    with console.status(f"Fitting {model} ..."):
        if study is not None:
            analysis = analyze_study(study, db, options)
        else:
            assert votes is not None  # exactly one of VOTES and --study, checked above
            # The options name the id columns, so custom-named ones are read as text too.
            analysis = analyze_votes(read_votes(votes, options), options, source=str(votes))
    result = analysis.result
    if score_set is not None and analysis.study_votes is not None:
        from toolkit.analysis.model_agreement import agreement_from_scores

        analysis.model_agreement = agreement_from_scores(score_set, analysis.study_votes, qa_config)

    if report is not None:
        from toolkit.analysis.report import write_report

        # The report first: --out or --raters-out may lie inside the report folder, which must
        # still be new or empty (or an earlier report) when it is claimed.
        console.print(f"report -> {write_report(analysis, report, overwrite=overwrite)}", markup=False, highlight=False)
    write_table(result.items_table(), out)
    console.print(f"[bold]{len(result.items)}[/] item scores -> {escape(str(out))}")
    if raters_out is not None:
        raters_table = result.raters_table()
        if analysis.model_agreement is not None:  # added columns only: the contract's five stay as they are
            from toolkit.analysis.model_agreement import with_model_agreement

            raters_table = with_model_agreement(raters_table, analysis.model_agreement)
        write_table(raters_table, raters_out)
        console.print(f"[bold]{len(result.raters)}[/] raters -> {escape(str(raters_out))}")
    _print_summary(analysis)


def _print_summary(analysis: Analysis) -> None:
    from rich.table import Table

    res = analysis.result
    rejected = res.raters[res.raters["rejected"]]
    summary = Table(show_header=False, box=None)
    summary.add_row("model", res.model)
    summary.add_row("votes / items / raters", f"{analysis.n_votes} / {len(res.items)} / {len(res.raters)}")
    summary.add_row("rejected raters", str(len(rejected)))
    if res.iterations:
        summary.add_row("iterations", f"{res.iterations} ({'converged' if res.converged else 'not converged'})")
    if analysis.agreement is not None:
        ag = analysis.agreement
        summary.add_row("split-half SRCC (noise ceiling)", f"{ag.srcc:.3f} [{ag.srcc_ci[0]:.3f}, {ag.srcc_ci[1]:.3f}]")
    rel = analysis.reliability
    if rel is not None and rel.alpha is not None:
        summary.add_row(f"Krippendorff's alpha ({rel.alpha.metric})", _with_ci(rel.alpha.alpha, rel.alpha.ci))
    if rel is not None and rel.icc is not None:
        summary.add_row(f"ICC(2,k), k = {rel.icc.k:.1f}", _with_ci(rel.icc.icc, rel.icc.ci))
    qa = analysis.model_agreement
    if qa is not None:
        summary.add_row("model SRCC with the MOS", f"{qa.srcc_mos:.3f} ({qa.n_matched} of {qa.n_items} items)")
        summary.add_row("raters disagreeing with model and peers", str(len(qa.flagged)))
    console.print(summary)
    if len(rejected):
        table = Table("rater", "reason", title="Rejected raters")
        for rater, row in rejected.iterrows():
            table.add_row(escape(str(rater)), escape(str(row["reason"])))
        console.print(table)
    notes = analysis.notes + (qa.notes if qa is not None else [])
    for note in notes:
        err_console.print(f"[yellow]note:[/] {escape(note)}")


def _with_ci(value: float, ci: tuple[float, float]) -> str:
    return f"{value:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if all(c == c for c in ci) else "")


def register(app: typer.Typer) -> None:
    app.command("analyze", no_args_is_help=True)(analyze_command)
