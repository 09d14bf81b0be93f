"""``qalign export-dataset``: a study as a Hugging Face dataset with a dataset card."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from toolkit.analysis.names import ModelName
from toolkit.cli.common import DbOption, console


class FormatChoice(str, Enum):
    dataset = "dataset"
    parquet = "parquet"


def register(app: typer.Typer) -> None:
    app.command("export-dataset")(export_dataset_command)


def export_dataset_command(
    study: str = typer.Argument(..., help="Name of the study in the database."),
    out: Path = typer.Option(
        ...,
        "--out",
        help="Output folder (README.md, data/*.parquet, hf_dataset/, items.csv): new, empty, or an earlier "
        "export with --overwrite.",
    ),
    fmt: Optional[list[FormatChoice]] = typer.Option(
        None, "--format", help="dataset (save_to_disk) and/or parquet; repeat for both (default: both)."
    ),
    split: str = typer.Option(
        "train=0.8,test=0.2", "--split", help="Split fractions by content group; 'none' for a single train split."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the split and of the question paraphrases."),
    subject_model: ModelName = typer.Option(
        "mos",
        "--subject-model",
        case_sensitive=False,  # sureal spells them MLE_CO, P913
        help="How item labels are made: mos (plain mean) or a subject model: mle, mle_co, bt500, p913.",
    ),
    license: Optional[str] = typer.Option(
        None, "--license", help="Licence id for the card, e.g. cc-by-4.0 (default: not stated)."
    ),
    license_link: Optional[str] = typer.Option(
        None, "--license-link", help="URL of the licence text (for custom licences)."
    ),
    citation: Optional[str] = typer.Option(
        None, "--citation", help="Citation for the card: BibTeX text or a .bib file."
    ),
    pretty_name: Optional[str] = typer.Option(None, "--pretty-name", help="Human-readable dataset name."),
    description: Optional[str] = typer.Option(None, "--description", help="Summary paragraph at the top of the card."),
    push_to_hub: Optional[str] = typer.Option(
        None,
        "--push-to-hub",
        help="Also upload to this Hugging Face hub dataset repository (user/name); needs HF_TOKEN or a login.",
    ),
    public: bool = typer.Option(
        False, "--public", help="With --push-to-hub: make a new repository public (default private)."
    ),
    db: Optional[str] = DbOption,
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace an earlier qalign output in the --out folder (never any other folder)."
    ),
) -> None:
    """Export a study's rated test items as a Hugging Face dataset with a dataset card.

    Labels with confidence intervals and vote histograms, byte-identical media dropped, splits
    that keep each content group on one side, and a README.md describing the design, the raters,
    the labels, the licence and the citation.
    """
    from toolkit.convert.study_dataset import export_study_dataset

    formats = [f.value for f in fmt] if fmt else ["dataset", "parquet"]
    with console.status(f"exporting study {study} ..."):
        result = export_study_dataset(
            study,
            out,
            db_url=db,
            formats=formats,
            split=None if split.strip().lower() in ("", "none") else split,
            seed=seed,
            subject_model=subject_model,
            license=license,
            license_link=license_link,
            citation=citation,
            pretty_name=pretty_name,
            description=description,
            push_to_hub=push_to_hub,
            private=not public,
            overwrite=overwrite,
        )
    from rich.table import Table

    grid = Table("split", "items", "content groups")
    frame = result.table.frame
    for name in result.table.split_names:
        part = frame[frame["split"] == name]
        grid.add_row(escape(str(name)), str(len(part)), str(part["group"].nunique()))
    console.print(grid)
    for note in result.notes:
        console.print(f"note: {note}", markup=False, highlight=False)
    console.print(f"wrote {result.out} ({len(result.files)} files)", markup=False, highlight=False)
    if result.hub_url:
        console.print(f"pushed to {result.hub_url}", markup=False, highlight=False)
