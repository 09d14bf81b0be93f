"""``qalign study``: create studies, add raters, import and export votes."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.markup import escape

from toolkit.cli.common import DbOption, console
from toolkit.errors import InputError

study_app = typer.Typer(help="Create studies, invite raters, import and export votes.", no_args_is_help=True)


GroupByFolderOption = typer.Option(
    None,
    "--group-by-folder",
    min=0,
    metavar="N",
    help="Content group of each item: the N-th folder of its path below the media root (0: the first), e.g. one "
    "folder per reference image.",
)
GroupRegexOption = typer.Option(
    None,
    "--group-regex",
    metavar="PATTERN",
    help="Content group of each item from its file name: the first capture group of PATTERN, or the whole match "
    "(e.g. '^(ref\\d+)_'); a file it does not match is an error.",
)


def _grouping(folder: Optional[int], regex: Optional[str]) -> Any:
    from toolkit.store.studies import ContentGrouping

    if folder is not None and regex is not None:
        raise InputError("give --group-by-folder or --group-regex, not both")
    return ContentGrouping(folder=folder, regex=regex) if folder is not None or regex is not None else None


@study_app.command("create")
def create_command(
    name: str = typer.Argument(..., help="Study name (unique in the database)."),
    media: Path = typer.Option(..., "--media", help="Media root: every image/video below it becomes an item."),
    manifest: Optional[Path] = typer.Option(
        None,
        "--manifest",
        help="CSV (path[,kind,content_group,role,expected_level,tolerance]) instead of scanning --media.",
    ),
    task: str = typer.Option("quality", "--task", help="quality, aesthetics or custom (custom needs --question)."),
    question: Optional[str] = typer.Option(None, "--question", help="The question shown to raters."),
    target_votes: int = typer.Option(15, "--target-votes", help="Votes wanted per item (BT.500: at least 15)."),
    items_per_session: int = typer.Option(50, "--items-per-session"),
    self_register: bool = typer.Option(
        False, "--self-register/--invite-only", help="May raters join without an invite token?"
    ),
    labels: Optional[str] = typer.Option(
        None, "--labels", help="Five comma-separated button labels, best first (default Excellent,Good,Fair,Poor,Bad)."
    ),
    gold_every: int = typer.Option(
        10, "--gold-every", help="Interleave one gold item after every N test votes (0: none)."
    ),
    group_by_folder: Optional[int] = GroupByFolderOption,
    group_regex: Optional[str] = GroupRegexOption,
    db: Optional[str] = DbOption,
) -> None:
    """Create a study from a media folder (or a manifest of files inside it).

    Content groups (the source content an item shows; splits keep each group on one side) come
    from the manifest's content_group column, else from --group-by-folder or --group-regex, else
    each file is its own group.
    """
    from toolkit.store import Store
    from toolkit.store.setup import StudySetup, setup_study

    grouping = _grouping(group_by_folder, group_regex)
    store = Store(db)
    with store.session() as session:
        _, result = setup_study(
            session,
            StudySetup(
                name=name,
                media_root=media,
                manifest=manifest,
                task=task,
                question=question,
                labels=labels.split(",") if labels else None,
                target_votes=target_votes,
                items_per_session=items_per_session,
                allow_self_register=self_register,
                gold_every=gold_every,
                grouping=grouping,
            ),
        )
    console.print(
        f"study [bold]{escape(name)}[/]: {len(result.added)} items added, {len(result.skipped)} already present"
    )


@study_app.command("add-items")
def add_items_command(
    name: str = typer.Argument(..., help="Study name."),
    manifest: Optional[Path] = typer.Option(
        None, "--manifest", help="CSV of items; default: scan the media root again."
    ),
    group_by_folder: Optional[int] = GroupByFolderOption,
    group_regex: Optional[str] = GroupRegexOption,
    db: Optional[str] = DbOption,
) -> None:
    """Add new files to a study (files already in it are skipped).

    Give the new items content groups the way the study's first items got theirs (the same
    --group-by-folder or --group-regex), so that groups spanning old and new items stay whole.
    """
    from toolkit.store import Store, add_items, get_study, read_item_manifest, scan_media

    grouping = _grouping(group_by_folder, group_regex)
    store = Store(db)
    with store.session() as session:
        study = get_study(session, name)
        specs = read_item_manifest(manifest) if manifest else scan_media(study.media_root)
        result = add_items(session, study, specs, grouping)
    console.print(f"{len(result.added)} items added, {len(result.skipped)} already present")


@study_app.command("add-rater")
def add_rater_command(
    name: str = typer.Argument(..., help="Study name."),
    rater: str = typer.Argument(..., help="Rater name (unique within the study)."),
    db: Optional[str] = DbOption,
) -> None:
    """Invite a rater; prints the token once (only its hash is stored)."""
    from toolkit.store import Store, get_study
    from toolkit.store.raters import invite_rater

    store = Store(db)
    with store.session() as session:
        token = invite_rater(session, get_study(session, name), rater)
    console.print(f"rater [bold]{escape(rater.strip())}[/] token: {token}")


@study_app.command("import")
def import_command(
    name: str = typer.Argument(..., help="Study name."),
    votes: Path = typer.Argument(..., help="CSV/Parquet/JSON of votes, one row per vote."),
    item_col: str = typer.Option("item", "--item-col", help="Column with the item path (relative to the media root)."),
    rater_col: str = typer.Option("rater", "--rater-col"),
    vote_col: str = typer.Option("vote", "--vote-col", help="Column with the vote, 1 (bad) .. 5 (excellent)."),
    db: Optional[str] = DbOption,
) -> None:
    """Import votes collected elsewhere; all-or-nothing, re-runs count nothing twice."""
    from toolkit.io import ID_COLUMNS, read_table
    from toolkit.store import Store, get_study, import_votes

    # Ids as written: raters "007" and "7" are two people, "NA" is a name; a blank one is an error.
    table = read_table(votes, text_columns={item_col, rater_col, *ID_COLUMNS}, required=(item_col, rater_col))
    store = Store(db)
    with store.session() as session:
        added, skipped = import_votes(
            session, get_study(session, name), table, item_col, rater_col, vote_col, source=str(votes)
        )
    console.print(f"{added} votes imported, {skipped} already stored")


@study_app.command("export")
def export_command(
    name: str = typer.Argument(..., help="Study name."),
    out: Path = typer.Option(..., "--out", help="Output file: .csv, .parquet, .json or .jsonl."),
    aggregate: bool = typer.Option(
        False,
        "--aggregate",
        help="Per-item MOS, SD, 95% CI, level and vote counts from the valid votes instead of raw votes.",
    ),
    db: Optional[str] = DbOption,
) -> None:
    """Export raw votes (every stored vote) or per-item aggregates (valid votes only)."""
    from toolkit.store import Store, export_study, get_study

    if aggregate:
        from toolkit.analysis.study_labels import item_aggregates
        from toolkit.io import write_table
        from toolkit.store import load_snapshot

        path = write_table(item_aggregates(load_snapshot(name, db)), out)
    else:
        store = Store(db)
        try:
            with store.session() as session:
                path = export_study(session, get_study(session, name), out)
        finally:
            store.dispose()
    console.print(f"wrote {path}", markup=False, highlight=False)


@study_app.command("list")
def list_command(db: Optional[str] = DbOption) -> None:
    """List the studies with their item, rater and vote counts."""
    from rich.table import Table

    # Imported from their modules, not from toolkit.store: listing needs neither pandas nor scipy.
    from toolkit.store.engine import Store
    from toolkit.store.overview import studies_overview

    store = Store(db)
    with store.session() as session:
        overview = studies_overview(session)
    store.dispose()
    table = Table("study", "task", "items", "raters", "votes", "valid votes", "target/item")
    for row in overview:
        table.add_row(
            escape(row.study),
            escape(row.task),
            *(str(n) for n in (row.items, row.raters, row.votes, row.valid_votes, row.target_votes)),
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(study_app, name="study")
