"""``qalign eval``: how well models agree with human ratings, as a report folder (Markdown, JSON, PNG).

Two ways in:

* score CSVs (as ``qalign score`` writes them) + ground truth: ``qalign eval a.csv b.csv --gt mos.csv --out rep/``
* models x test sets, scored here:
  ``qalign eval --model base --model tuned --test koniq.json --test mine.csv --out rep/``
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.markup import escape

from toolkit.cli.common import DbOption, console
from toolkit.qalign import Task

if TYPE_CHECKING:  # kept out of --help: pandas is slow to import
    import pandas as pd


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)


def eval_command(
    scores: Optional[list[Path]] = typer.Argument(
        None,
        help="Score CSVs as written by 'qalign score' (columns path, score, ...); one per model. Omit with --model.",
    ),
    out: Path = typer.Option(..., "--out", help="Report folder (report.md, report.json, PNG figures)."),
    gt: Optional[Path] = typer.Option(
        None,
        "--gt",
        help="With score CSVs: ground truth (MOS table, vote counts, raw votes or Q-Align JSON). "
        "Default: the gt_score column of the score CSVs.",
    ),
    model: Optional[list[str]] = typer.Option(
        None,
        "--model",
        help="Model to score the test sets with (folder, hub id or 'tiny'); repeat for several. "
        "The first is the reference of the paired comparisons.",
    ),
    adapter: Optional[list[str]] = typer.Option(
        None,
        "--adapter",
        help="LoRA adapter folder, one per --model in order ('none' for no adapter); "
        "with a single --model, each adapter goes on it.",
    ),
    test: Optional[list[Path]] = typer.Option(
        None,
        "--test",
        help="Test set for --model: Q-Align JSON, MOS table, vote table or manifest with gt_score; repeat for several.",
    ),
    images: Optional[Path] = typer.Option(
        None,
        "--images",
        help="Media folder that relative paths in the test sets start from (default: each test file's folder).",
    ),
    name: Optional[list[str]] = typer.Option(
        None,
        "--name",
        help="Name of each score CSV or model, in order (default: file or folder names), "
        "e.g. --name before --name after.",
    ),
    votes: Optional[Path] = typer.Option(
        None,
        "--votes",
        help="Raw votes (item, rater, vote) of the test items: noise ceiling and vote-histogram calibration.",
    ),
    study: Optional[str] = typer.Option(
        None, "--study", help="Take the raw votes from this study in the database instead of --votes."
    ),
    db: Optional[str] = DbOption,
    score_col: Optional[str] = typer.Option(
        None, "--score-col", help="Column holding the predictions in score CSVs (default: score)."
    ),
    mos_col: Optional[str] = typer.Option(
        None, "--mos-col", help="MOS column of the ground truth or test sets (default: mos, gt_score, score, ...)."
    ),
    low: Optional[float] = typer.Option(
        None, "--low", help="Lower end of the test sets' MOS scale, for MOS levels (default: the data's minimum)."
    ),
    high: Optional[float] = typer.Option(
        None, "--high", help="Upper end of the test sets' MOS scale (default: the data's maximum)."
    ),
    task: Task = typer.Option("quality", "--task", help="What the models rate."),
    video: bool = typer.Option(False, "--video", help="Test items are videos: video files or folders of frames."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
    dtype: str = typer.Option("float32", "--dtype", help="float32, bfloat16, float16 or auto."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Inputs per forward pass."),
    boot: int = typer.Option(1000, "--boot", min=1, help="Bootstrap draws per coefficient."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap and of the split-half draws."),
    confidence: float = typer.Option(
        0.95, "--confidence", min=0.5, max=0.999, help="Confidence level of the intervals."
    ),
    bins: int = typer.Option(10, "--bins", min=1, help="Probability bins of the calibration (ECE, reliability plot)."),
    noise_ceiling: Optional[float] = typer.Option(
        None,
        "--noise-ceiling",
        help="With score CSVs and no votes: an inter-rater split-half SRCC to show as the noise ceiling.",
    ),
    title: Optional[str] = typer.Option(None, "--title", help="Report title."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars while scoring."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Write into an earlier qalign report at --out (never any other non-empty folder)."
    ),
) -> None:
    """Measure how well predicted scores agree with the MOS and write a report.

    SRCC, KRCC, PLCC and RMSE (raw and after the 4-parameter logistic) with bootstrap intervals;
    every later model is compared with the first by a paired bootstrap. With --model, each model
    scores each --test set (one report section per test set, with calibration of the predicted
    level distributions); with --votes or --study, the raters' split-half agreement is the noise
    ceiling.
    """
    from toolkit.errors import InputError

    if bool(scores) == bool(model):
        raise InputError("give either score CSVs or --model (with --test), not both and not neither")
    if votes is not None and study is not None:
        raise InputError("give --votes or --study, not both")
    vote_table = _votes(votes, study, db)
    from toolkit.files import prepare_output_dir

    prepare_output_dir(out, overwrite=overwrite, written_by="qalign eval")
    if model:
        _models_mode(
            list(model),
            list(adapter or []),
            list(test or []),
            list(name or []),
            out,
            images=images,
            votes=vote_table,
            mos_col=mos_col,
            low=low,
            high=high,
            task=task,
            video=video,
            device=device,
            dtype=dtype,
            batch_size=batch_size,
            boot=boot,
            seed=seed,
            confidence=confidence,
            bins=bins,
            title=title or "Model evaluation",
            progress=progress,
        )
        return
    if test or adapter:
        raise InputError("--test and --adapter go with --model; with score CSVs use --gt")
    _scores_mode(
        list(scores or []),
        out,
        gt=gt,
        names=list(name) if name else None,
        score_col=score_col,
        mos_col=mos_col,
        votes=vote_table,
        boot=boot,
        seed=seed,
        confidence=confidence,
        noise_ceiling=noise_ceiling,
        title=title or "Agreement with human ratings",
    )


def _votes(votes: Optional[Path], study: Optional[str], db: Optional[str]) -> pd.DataFrame | None:
    if votes is not None:
        from toolkit.io import read_table

        return read_table(votes)
    if study is not None:
        from toolkit.store import load_snapshot

        return load_snapshot(study, db).votes  # valid votes: raters excluded by the admin left out
    return None


def _scores_mode(
    scores, out, *, gt, names, score_col, mos_col, votes, boot, seed, confidence, noise_ceiling, title
) -> None:  # noqa: ANN001
    from toolkit.evaluation import load_evaluation_inputs, match_votes, write_report

    gt_options = {"columns": {"mos": mos_col}} if mos_col else {}
    aligned = load_evaluation_inputs(scores, gt, names=names, score_col=score_col, gt_options=gt_options)
    notes = list(aligned.notes)
    ceiling = noise_ceiling
    if votes is not None:
        matched = match_votes(votes, aligned.items, seed=seed, confidence=confidence)
        notes.extend(matched.notes)
        ceiling = matched.ceiling if matched.ceiling is not None else noise_ceiling
    with console.status(f"bootstrapping {len(aligned.items)} items x {boot} draws ..."):
        report = write_report(
            out,
            aligned.predictions,
            aligned.mos,
            items=aligned.items,
            noise_ceiling=ceiling,
            n_boot=boot,
            seed=seed,
            confidence=confidence,
            title=title,
            notes=notes,
            overwrite=True,  # the folder eval_command prepared: its own output by now
        )
    _print_table({"": report.results}, [(c, "") for c in report.comparisons], report.notes)
    console.print(f"wrote {report.out_dir / 'report.md'}", markup=False, highlight=False)


def _models_mode(
    models,
    adapters,
    tests,
    names,
    out,
    *,
    images,
    votes,
    mos_col,
    low,
    high,
    task,
    video,
    device,
    dtype,  # noqa: ANN001
    batch_size,
    boot,
    seed,
    confidence,
    bins,
    title,
    progress,
) -> None:
    from toolkit.errors import InputError
    from toolkit.evaluation import evaluate_models, model_specs

    if not tests:
        raise InputError("--model needs at least one --test set")
    specs = model_specs(models, adapters, names)
    report = evaluate_models(
        specs,
        tests,
        out,
        images=images,
        votes=votes,
        video=video,
        task=task,
        device=device,
        dtype=dtype,
        batch_size=batch_size,
        n_boot=boot,
        seed=seed,
        confidence=confidence,
        n_bins=bins,
        columns={"mos": mos_col} if mos_col else None,
        low=low,
        high=high,
        title=title,
        progress=progress,
        overwrite=True,  # the folder eval_command prepared: its own output by now
    )
    _print_table(
        {t.name: t.results for t in report.tests.values()},
        [(c, t.name) for t in report.tests.values() for c in t.comparisons],
        [f"{t.name}: {n}" for t in report.tests.values() for n in t.notes],
        ceilings={t.name: t.noise_ceiling for t in report.tests.values()},
        calibration={t.name: t.calibration for t in report.tests.values()},
    )
    console.print(f"wrote {report.out_dir / 'report.md'}", markup=False, highlight=False)


def _print_table(results, comparisons, notes, ceilings=None, calibration=None) -> None:  # noqa: ANN001
    from rich.table import Table

    with_tests = any(results)
    columns = (["test set"] if with_tests else []) + [
        "set",
        "n",
        "SRCC",
        "KRCC",
        "PLCC raw",
        "PLCC logistic",
        "RMSE logistic",
    ]
    if calibration:
        columns += ["mean KL", "ECE"]
    grid = Table(*columns)
    for test_name, sets in results.items():
        for set_name, res in sets.items():
            row = ([escape(test_name)] if with_tests else []) + [escape(set_name), str(res.n)]
            row += [
                f"{res[m].value:.4f} [{res[m].ci_low:.3f}, {res[m].ci_high:.3f}]"
                for m in ("srcc", "krcc", "plcc", "plcc_logistic", "rmse_logistic")
            ]
            if calibration:
                cal = calibration.get(test_name, {}).get(set_name)
                row += [f"{cal.mean_kl:.3f}", f"{cal.ece:.3f}"] if cal is not None else ["-", "-"]
            grid.add_row(*row)
    console.print(grid)
    for test_name, ceiling in (ceilings or {}).items():
        if ceiling is not None:
            console.print(
                f"{escape(test_name)}: noise ceiling (split-half SRCC) {ceiling.value:.4f} "
                f"[{ceiling.ci_low:.3f}, {ceiling.ci_high:.3f}]"
            )
    for comp, test_name in comparisons:
        d = comp.differences["srcc"]
        where = f"{escape(test_name)}: " if test_name else ""
        console.print(
            f"{where}{escape(comp.b)} - {escape(comp.a)}: "
            f"SRCC {d.diff:+.4f} [{d.ci_low:+.4f}, {d.ci_high:+.4f}], p = {d.p_value:.3f}"
        )
    for note in notes:
        console.print(f"note: {note}", markup=False, highlight=False)
