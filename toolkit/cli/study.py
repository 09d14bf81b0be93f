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
    """Import votes collected elsewhere; all-or-nothing, re-runs count nothing twice.

    From 200,000 new votes on the import is a bulk load (indexes and checks rebuilt set-based);
    on PostgreSQL the annotation app's votes wait until it commits (docs/deployment.md).
    """
    from toolkit.store import Store, get_study
    from toolkit.store.vote_import import import_vote_file

    # Ids as written: raters "007" and "7" are two people, "NA" is a name; a blank one is an error.
    # The table is streamed in chunks: a file of tens of millions of votes is never loaded whole.
    store = Store(db)
    with store.session() as session:
        added, skipped = import_vote_file(session, get_study(session, name), votes, item_col, rater_col, vote_col)
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
    raters: bool = typer.Option(
        False,
        "--raters",
        help="One row per rater for paying crowd workers: platform and worker id, votes, traps passed and failed, "
        "time on task, completion and its code.",
    ),
    db: Optional[str] = DbOption,
) -> None:
    """Export raw votes (every stored vote), per-item aggregates (valid votes only) or per-rater figures."""
    from toolkit.store import Store, export_study, get_study

    if aggregate and raters:
        raise InputError("give --aggregate or --raters, not both")
    if raters:
        from toolkit.store.payments import export_payments

        store = Store(db)
        try:
            with store.session() as session:
                path = export_payments(session, get_study(session, name), out)
        finally:
            store.dispose()
    elif aggregate:
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


def _size(text: Optional[str], option: str) -> tuple[int, int] | None:
    if text is None:
        return None
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise InputError(f"{option}: expected WIDTHxHEIGHT in pixels, e.g. 1280x720, got {text!r}")
    return int(parts[0]), int(parts[1])


def _text_file(path: Optional[Path], option: str) -> Optional[str]:
    if path is None:
        return None
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{option}: cannot read {str(path)!r} as UTF-8 text ({exc.__class__.__name__})") from None


@study_app.command("configure")
def configure_command(
    name: str = typer.Argument(..., help="Study name."),
    instructions: Optional[Path] = typer.Option(None, "--instructions", help="Markdown file shown first."),
    consent: Optional[Path] = typer.Option(None, "--consent", help="Markdown file the rater agrees to."),
    oversize: Optional[str] = typer.Option(
        None, "--oversize", help="Stimuli larger than the window: 'scale' (factor recorded per vote) or 'refuse'."
    ),
    min_viewport: Optional[str] = typer.Option(None, "--min-viewport", help="Smallest window, e.g. 1280x720 (CSS px)."),
    min_dpr: Optional[float] = typer.Option(None, "--min-dpr", help="Smallest device pixel ratio (0: any)."),
    max_zoom_deviation: Optional[float] = typer.Option(
        None, "--max-zoom-deviation", help="Browser zoom allowed off 100 %, e.g. 0.05 (negative: not checked)."
    ),
    measure: bool = typer.Option(False, "--measure-stimuli", help="Measure the largest image (for --oversize refuse)."),
    video_replay: Optional[str] = typer.Option(None, "--video-replay", help="none, once or free."),
    audio: Optional[str] = typer.Option(None, "--audio", help="muted or sound."),
    quiz_items: Optional[int] = typer.Option(
        None, "--quiz-items", help="Gold items in the qualification quiz (0: none)."
    ),
    quiz_pass: Optional[int] = typer.Option(None, "--quiz-pass", help="Quiz answers within tolerance needed to pass."),
    trap_every: Optional[int] = typer.Option(None, "--trap-every", help="One trapping question per N votes (0: none)."),
    max_failed_traps: Optional[int] = typer.Option(
        None, "--max-failed-traps", help="Exclude at this many failed traps (0: rule off)."
    ),
    min_gold_accuracy: Optional[float] = typer.Option(
        None, "--min-gold-accuracy", help="Exclude below this share of gold answers within tolerance (0: rule off)."
    ),
    max_same_run: Optional[int] = typer.Option(
        None, "--max-same-run", help="Exclude at this many equal votes in a row (0: rule off)."
    ),
    max_level_share: Optional[float] = typer.Option(
        None, "--max-level-share", help="Exclude when one level reaches this share of the votes (0: rule off)."
    ),
    min_median_ms: Optional[float] = typer.Option(
        None, "--min-median-ms", help="Exclude below this median response time in ms (0: rule off)."
    ),
    rule_min_votes: Optional[int] = typer.Option(
        None, "--rule-min-votes", help="Votes a rater gives before the vote-pattern rules apply."
    ),
    crowd: Optional[str] = typer.Option(
        None,
        "--crowd",
        help="Platforms whose workers join without invites: prolific, mturk, both comma-separated, or ''.",
    ),
    completion_code: Optional[str] = typer.Option(None, "--completion-code", help="Code shown at the end ('' clears)."),
    mturk_submit_url: Optional[str] = typer.Option(None, "--mturk-submit-url", help="MTurk externalSubmit URL."),
    max_items: Optional[int] = typer.Option(None, "--max-items-per-rater", help="Votes per rater (0: no cap)."),
    admin_secret: Optional[str] = typer.Option(
        None, "--admin-secret", help="A secret opening this study's admin pages only ('' removes it)."
    ),
    db: Optional[str] = DbOption,
) -> None:
    """Set how a study is run: screen check, presentation, quiz, traps, exclusion rules, crowd work.

    Options not given keep their value; the defaults run a study as plain invited rating.
    """
    from toolkit.store import Store, get_study
    from toolkit.store.admin_secret import set_study_admin_secret
    from toolkit.store.study_settings import configure_protocol, measure_stimuli, set_study_texts

    changes: dict[str, Any] = {}
    viewport = _size(min_viewport, "--min-viewport")
    if viewport is not None:
        changes["min_viewport_width"], changes["min_viewport_height"] = viewport
    plain = dict(oversize=oversize, min_dpr=min_dpr, video_replay=video_replay, audio=audio, quiz_items=quiz_items)
    plain.update(quiz_pass=quiz_pass, trap_every=trap_every, rule_min_votes=rule_min_votes)
    plain.update(mturk_submit_url=mturk_submit_url)
    changes.update({k: v for k, v in plain.items() if v is not None})
    # Rules and caps: 0 switches them off (stored as None).
    for key, value in dict(
        max_failed_traps=max_failed_traps,
        min_gold_accuracy=min_gold_accuracy,
        max_same_run=max_same_run,
        max_level_share=max_level_share,
        min_median_ms=min_median_ms,
        max_items_per_rater=max_items,
    ).items():
        if value is not None:
            changes[key] = None if value == 0 else value
    if max_zoom_deviation is not None:
        changes["max_zoom_deviation"] = None if max_zoom_deviation < 0 else max_zoom_deviation
    if crowd is not None:
        changes["crowd_platforms"] = tuple(p for p in crowd.split(",") if p.strip())
    if completion_code is not None:
        changes["completion_code"] = completion_code or None
    texts = _text_file(instructions, "--instructions"), _text_file(consent, "--consent")
    store = Store(db)
    try:
        with store.session() as session:
            study = get_study(session, name)
            set_study_texts(session, study, instructions=texts[0], consent=texts[1])
            if measure:
                width, height = measure_stimuli(session, study)
                console.print(f"largest image: {width}x{height} pixels")
            protocol = configure_protocol(session, study, **changes)
            if admin_secret is not None:
                set_study_admin_secret(session, study, admin_secret or None)
    finally:
        store.dispose()
    shown = {k: v for k, v in vars(protocol).items() if k in changes}
    console.print(
        f"study {name}: " + (", ".join(f"{k}={v!r}" for k, v in shown.items()) or "settings unchanged"),
        markup=False,
        highlight=False,
    )


@study_app.command("add-trap")
def add_trap_command(
    name: str = typer.Argument(..., help="Study name."),
    path: str = typer.Argument(..., help="Stimulus file, relative to the study's media root."),
    level: int = typer.Option(..., "--level", min=1, max=5, help="The level the screen tells the rater to press."),
    message: Optional[str] = typer.Option(
        None, "--message", help="Text drawn over the stimulus (default: asks for the level by its label)."
    ),
    db: Optional[str] = DbOption,
) -> None:
    """Add a trapping question (P.808): served after every --trap-every votes, never a vote itself."""
    from toolkit.store import Store, get_study
    from toolkit.store.protocol import add_trap

    store = Store(db)
    try:
        with store.session() as session:
            trap = add_trap(session, get_study(session, name), path, level, message)
            text = trap.message
    finally:
        store.dispose()
    console.print(f"trap {path}: {text}", markup=False, highlight=False)


@study_app.command("screen")
def screen_command(
    name: str = typer.Argument(..., help="Study name."),
    db: Optional[str] = DbOption,
) -> None:
    """Run the study's exclusion rules now and list the flagged raters with the reasons."""
    from rich.table import Table

    from toolkit.store import Store, get_study
    from toolkit.store.exclusion import list_flags, run_exclusion

    store = Store(db)
    try:
        with store.session() as session:
            study = get_study(session, name)
            screened = run_exclusion(session, study)
            rows = list_flags(session, study)
    finally:
        store.dispose()
    table = Table("rater", "excluded", "rule", "reason", "override")
    for row in rows:
        override = f"{row.override}: {row.override_reason}" if row.override else ""
        table.add_row(*(escape(str(v)) for v in (row.rater, row.excluded, row.rule or "", row.reason or "", override)))
    console.print(table)
    excluded = sum(r.excluded for r in screened)
    console.print(f"{len(screened)} raters screened, {excluded} excluded (their votes are kept and left out of labels)")


def register(app: typer.Typer) -> None:
    app.add_typer(study_app, name="study")
