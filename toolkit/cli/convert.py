"""``qalign convert``: a rating table -> Q-Align conversation JSON, a HF dataset or Parquet."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.markup import escape

from toolkit.analysis.names import ModelName
from toolkit.cli.common import DbOption, console
from toolkit.qalign import Task

if TYPE_CHECKING:  # kept out of --help: the converters import pandas
    from toolkit.convert.pipeline import ConvertResult


class FormatChoice(str, Enum):
    json = "json"
    dataset = "dataset"
    parquet = "parquet"


class RuleChoice(str, Enum):
    equal = "equal"
    floor = "floor"


class KindChoice(str, Enum):
    auto = "auto"
    mos = "mos"
    counts = "counts"
    votes = "votes"


class SoftChoice(str, Enum):
    auto = "auto"
    histogram = "histogram"
    gaussian = "gaussian"
    onehot = "onehot"


def register(app: typer.Typer) -> None:
    app.command("convert")(convert_command)


def convert_command(
    input: Optional[Path] = typer.Argument(
        None,
        help="Rating table (CSV, TSV, Parquet or JSON): MOS per item, vote counts c1..c5, or "
        "one vote per row. Omit with --study.",
    ),
    out: Path = typer.Option(..., "--out", help="Output folder (or a .json file for a single split in json format)."),
    fmt: FormatChoice = typer.Option(
        FormatChoice.json, "--format", help="json (Q-Align conversations), dataset (HF save_to_disk) or parquet."
    ),
    images: Optional[Path] = typer.Option(
        None,
        "--images",
        help="Media root; paths in the output are relative to it. Needed for dataset/parquet and for deduplication.",
    ),
    task: Task = typer.Option("quality", "--task", help="What the questions ask about."),
    video: bool = typer.Option(False, "--video", help="Items are videos: video files or folders of frames."),
    rule: RuleChoice = typer.Option(
        RuleChoice.equal,
        "--rule",
        help="MOS to level: equal (paper: five equal intervals) or floor (rescale to [0,5], integer part).",
    ),
    low: Optional[float] = typer.Option(
        None, "--low", help="Lower bound of the MOS scale (default: the data's minimum)."
    ),
    high: Optional[float] = typer.Option(
        None, "--high", help="Upper bound of the MOS scale (default: the data's maximum)."
    ),
    dmos: bool = typer.Option(False, "--dmos", help="Lower scores are better (DMOS): flip before assigning levels."),
    split: Optional[str] = typer.Option(
        None,
        "--split",
        help="Split fractions by content group, e.g. train=0.8,test=0.2 (default: keep the input's split column).",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the split and of the question paraphrases."),
    group_by: Optional[str] = typer.Option(
        None, "--group-by", help="Content-group column (default: group, content_group or content when present)."
    ),
    kind: KindChoice = typer.Option(KindChoice.auto, "--kind", help="Input layout; auto detects it from the columns."),
    path_col: Optional[str] = typer.Option(
        None, "--path-col", help="Column with the media path (default: image, img_path, path, image_name, ...)."
    ),
    mos_col: Optional[str] = typer.Option(
        None, "--mos-col", help="Column with the MOS (default: mos, gt_score, score, ...)."
    ),
    sd_col: Optional[str] = typer.Option(None, "--sd-col", help="Column with the SD of the ratings."),
    soft: SoftChoice = typer.Option(
        SoftChoice.auto, "--soft", help="Level distribution: vote histogram, Gaussian from MOS and SD, or one-hot."
    ),
    soft_labels: bool = typer.Option(False, "--soft-labels", help="Add a level_probs field to each JSON record."),
    prefix: str = typer.Option(
        "", "--prefix", help="Folder put in front of every media path in the JSON (e.g. koniq)."
    ),
    study: Optional[str] = typer.Option(
        None, "--study", help="Read the votes of this study from the database instead of a file."
    ),
    subject_model: ModelName = typer.Option(
        "mos",
        "--subject-model",
        case_sensitive=False,  # sureal spells them MLE_CO, P913
        help="With --study: mos (plain mean, vote histograms) or a cleaned label: mle, mle_co, bt500, p913.",
    ),
    db: Optional[str] = DbOption,
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace an earlier qalign output in the --out folder (never any other folder)."
    ),
) -> None:
    """Turn human ratings into Q-Align training data (JSON, HF dataset or Parquet).

    Levels come from the MOS (or the votes), questions from the paraphrase pool; byte-identical
    media are dropped and splits keep each content group on one side.
    """
    from toolkit.convert import convert
    from toolkit.errors import InputError

    if (input is None) == (study is None):
        raise InputError("give either a rating table or --study NAME")
    if study is not None:
        from toolkit.convert.study import convert_study

        # A study's labels and levels come from its label table (vote scale [1, 5], equal
        # intervals), the same as export-dataset's; options that would change them do not apply.
        ignored = [
            flag
            for flag, given in (
                ("--low", low is not None),
                ("--high", high is not None),
                ("--dmos", dmos),
                ("--rule", rule is not RuleChoice.equal),
                ("--kind", kind is not KindChoice.auto),
                ("--group-by", group_by is not None),
                ("--path-col", path_col is not None),
                ("--mos-col", mos_col is not None),
                ("--sd-col", sd_col is not None),
            )
            if given
        ]
        if ignored:
            raise InputError(
                "with --study the labels are the study's own (vote scale 1-5, equal intervals); "
                f"drop {', '.join(ignored)}"
            )
        with console.status("converting ..."):
            result = convert_study(
                study,
                out,
                db_url=db,
                subject_model=subject_model,
                fmt=fmt.value,
                images=images,
                task=task,
                video=video or None,
                split=split,
                seed=seed,
                soft=soft.value,
                prefix=prefix,
                soft_labels_in_json=soft_labels,
                overwrite=overwrite,
            )
        _print_result(result)
        return
    source = input
    columns = {k: v for k, v in (("path", path_col), ("mos", mos_col), ("sd", sd_col)) if v}
    with console.status("converting ..."):
        result = convert(
            source,
            out,
            fmt=fmt.value,
            images=images,
            task=task,
            video=video,
            rule=rule.value,
            low=low,
            high=high,
            dmos=dmos,
            split=split,
            seed=seed,
            group_by=group_by,
            kind=None if kind is KindChoice.auto else kind.value,
            columns=columns,
            soft=soft.value,
            prefix=prefix,
            soft_labels_in_json=soft_labels,
            overwrite=overwrite,
        )
    _print_result(result)


def _print_result(result: ConvertResult) -> None:
    from rich.table import Table

    table = result.table
    scale = table.scale
    console.print(
        f"{len(table)} item(s) kept from {escape(str(table.source))} ({table.kind} table), "
        f"levels by the {table.rule} rule"
        f" on [{scale.low:g}, {scale.high:g}]{' (DMOS, flipped)' if not scale.higher_is_better else ''};"
        f" level distribution: {table.soft}"
    )
    counts = result.level_counts
    grid = Table("split", *counts.columns.astype(str), "items")
    for name, row in counts.iterrows():
        grid.add_row(escape(str(name)), *(str(int(v)) for v in row), str(int(row.sum())))
    console.print(grid)
    if result.duplicates is not None and len(result.duplicates):
        console.print(f"[yellow]dropped {len(result.duplicates)} duplicate(s):[/]")
        for _, dup in result.duplicates.dropped.head(10).iterrows():
            console.print(f"  {dup['path']} = {dup['duplicate_of']}", markup=False, highlight=False)
        if len(result.duplicates) > 10:
            console.print(f"  ... and {len(result.duplicates) - 10} more")
    for note in result.notes:
        if not note.startswith("dropped"):
            console.print(f"note: {note}", markup=False, highlight=False)
    for path in result.outputs:
        console.print(f"wrote {path}", markup=False, highlight=False)
