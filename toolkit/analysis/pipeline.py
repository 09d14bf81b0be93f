"""From a long vote table to cleaned labels: screening, a subject model, agreement.

:func:`analyze_votes` is what ``qalign analyze`` runs; :func:`clean_labels` is the short way to
the per-item table the converters read (``item, score, sd, std, ci_low, ci_high, n``).

Gold and training items (``role`` column, as the store exports it) serve the screening only;
the subject model sees the study's own items.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

import numpy as np
import pandas as pd

from toolkit.analysis.agreement import SPLIT_HALF_MAX_VOTES, SplitHalfResult, split_half_agreement
from toolkit.analysis.mle import Solver
from toolkit.analysis.model_agreement import ModelAgreement
from toolkit.analysis.mos import CiMethod, item_statistics
from toolkit.analysis.reliability import RELIABILITY_BOOT_MAX_VOTES, Reliability, measure_reliability
from toolkit.analysis.result import SubjectModelResult
from toolkit.analysis.screening import ScreeningConfig, ScreeningReport, screen_raters, study_rows
from toolkit.analysis.subject_models import ModelName, fit_subject_model
from toolkit.analysis.votes import Votes, check_vote_table, prepare_votes
from toolkit.errors import InputError, StoreError
from toolkit.io import ID_COLUMNS, read_table

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from toolkit.store.snapshot import StudySnapshot

AUTO = "auto"
CONTENT_COLUMNS: tuple[str, ...] = ("content", "content_group")
"""Column names taken as the item's source content when ``content_col='auto'``."""


@dataclass(frozen=True)
class AnalysisOptions:
    model: ModelName = "mle_co"
    ci: CiMethod = "t"
    solver: Solver = "auto"
    min_rater_votes: int = 2
    item_col: str = "item"
    rater_col: str = "rater"
    vote_col: str = "vote"
    content_col: str | None = AUTO  # None: no content grouping (each item its own content)
    screening: ScreeningConfig | None = field(default_factory=ScreeningConfig)
    exclude_flagged: bool = False  # drop raters flagged by the screening before fitting
    agreement_splits: int = 200  # 0 skips the split-half agreement
    seed: int = 0
    reliability: bool = True  # Krippendorff's alpha and ICC(2,k) on the votes split-half uses
    reliability_boot: int = 1000  # bootstrap replicates of their intervals; 0: point estimates only
    # Above these many votes split-half and the reliability bootstrap use a random subsample of the
    # items, and the notes say so (see toolkit.analysis.agreement and toolkit.analysis.reliability).
    agreement_max_votes: int = SPLIT_HALF_MAX_VOTES
    reliability_max_boot_votes: int = RELIABILITY_BOOT_MAX_VOTES


class CleanOptions(TypedDict, total=False):
    """The :class:`AnalysisOptions` fields :func:`clean_labels` passes on (all but ``model``,
    ``agreement_splits`` and the reliability ones, which it sets itself)."""

    ci: CiMethod
    solver: Solver
    min_rater_votes: int
    item_col: str
    rater_col: str
    vote_col: str
    content_col: str | None
    screening: ScreeningConfig | None
    exclude_flagged: bool
    seed: int


@dataclass
class Analysis:
    """Everything ``qalign analyze`` reports."""

    result: SubjectModelResult
    item_stats: pd.DataFrame
    screening: ScreeningReport | None
    agreement: SplitHalfResult | None
    n_votes: int
    source: str
    notes: list[str] = field(default_factory=list)
    reliability: Reliability | None = None
    study_votes: Votes | None = None  # every rater's votes on the study items (rater QA input)
    model_agreement: ModelAgreement | None = None  # set by the caller that has a model's scores


def read_votes(path: str | Path, options: AnalysisOptions | None = None) -> pd.DataFrame:
    """A vote table from CSV, Parquet or JSON (errors name the file).

    Item, rater and content ids are text as written (``007`` and ``7`` are two raters, ``NA`` is
    a rater's name); a blank item or rater is an error naming its line.
    """
    opt = options or AnalysisOptions()
    ids = {opt.item_col, opt.rater_col, *ID_COLUMNS}
    if opt.content_col not in (None, AUTO):
        ids.add(opt.content_col)
    return read_table(path, text_columns=ids, required=(opt.item_col, opt.rater_col))


def load_study_votes(study: str, db_url: str | None = None) -> tuple[pd.DataFrame, list[str]]:
    """A study's valid votes (``toolkit.store.load_snapshot``: raters excluded by the admin left
    out), one row per vote, and the paths of its test items."""
    from toolkit.store import load_snapshot

    snapshot = load_snapshot(study, db_url)
    if snapshot.votes.empty:
        raise StoreError(f"study {study!r} has no valid votes yet")
    return snapshot.votes, snapshot.test_items["item"].tolist()


def analyze_snapshot(snapshot: StudySnapshot, options: AnalysisOptions | None = None) -> Analysis:
    """:func:`analyze_votes` on a study's valid votes. Items nobody has rated yet are not scored
    (a study in progress is normal); the notes say how many there are and how many raters the
    admin excluded."""
    if snapshot.votes.empty:
        raise StoreError(f"study {snapshot.name!r} has no valid votes yet")
    # The store's columns have fixed names; content groups come from its content_group column.
    opts = replace(options or AnalysisOptions(), item_col="item", rater_col="rater", vote_col="vote")
    analysis = analyze_votes(snapshot.votes, opts, source=f"study {snapshot.name}")
    if snapshot.excluded_raters:
        analysis.notes.append(
            f"{snapshot.raters_excluded} rater(s) excluded by the admin left out"
            f" ({snapshot.excluded_votes} vote(s) not counted)"
        )
    unrated = len(set(snapshot.test_items["item"]) - set(analysis.result.items.index))
    if unrated:
        analysis.notes.append(f"{unrated} study item(s) have no votes yet and are not scored")
    return analysis


ANALYSIS_VOTE_COLUMNS: tuple[str, ...] = (
    *("item", "rater", "vote", "content_group", "role", "expected_level", "tolerance"),
    *("shown_at", "answered_at", "response_ms"),
)
"""The vote columns the analysis reads from a study (screening included; not the media kind or hash)."""


def analyze_study(study: str, db_url: str | None = None, options: AnalysisOptions | None = None) -> Analysis:
    """:func:`analyze_snapshot` on the study called ``study`` in the database at ``db_url``."""
    from toolkit.store import load_snapshot

    # Compact votes: the analysis reads the levels as numbers and only compares the gold columns.
    return analyze_snapshot(load_snapshot(study, db_url, ANALYSIS_VOTE_COLUMNS, compact=True), options)


def _content_column(frame: pd.DataFrame, content_col: str | None) -> str | None:
    if content_col != AUTO:
        return content_col
    return next((c for c in CONTENT_COLUMNS if c in frame.columns and frame[c].notna().all()), None)


def _excluded_rater_rows(excluded: pd.DataFrame, scores: pd.Series, reasons: pd.Series) -> pd.DataFrame:
    """Rater rows for raters dropped before the fit: descriptive bias/inconsistency on their votes."""
    residual = excluded["vote"].to_numpy(dtype=float) - scores.reindex(excluded["item"]).to_numpy()
    frame = pd.DataFrame({"rater": excluded["rater"].to_numpy(), "r": residual})
    grouped = frame.groupby("rater")["r"]
    bias = grouped.mean()
    inconsistency = grouped.std(ddof=0).fillna(0.0)
    rows = pd.DataFrame(
        {
            "n": grouped.size(),
            "bias": bias,
            "bias_std": np.nan,
            "inconsistency": inconsistency,
            "inconsistency_ci_low": np.nan,
            "inconsistency_ci_high": np.nan,
            "rejected": True,
        }
    )
    rows["reason"] = "screening: " + reasons.reindex(rows.index).fillna("flagged")
    rows.index.name = "rater"
    return rows


def analyze_votes(frame: pd.DataFrame, options: AnalysisOptions | None = None, source: str = "votes") -> Analysis:
    """Screen the raters, fit the subject model, measure the split-half agreement, Krippendorff's
    alpha and ICC(2,k) (:mod:`toolkit.analysis.reliability`)."""
    opt = options or AnalysisOptions()
    missing = [c for c in (opt.item_col, opt.rater_col, opt.vote_col) if c not in frame.columns]
    if missing:
        raise InputError(
            f"{source}: missing column(s) {', '.join(map(repr, missing))}; "
            f"found {', '.join(map(str, frame.columns))} (see --item-col, --rater-col, --vote-col)"
        )
    table = frame.rename(columns={opt.item_col: "item", opt.rater_col: "rater", opt.vote_col: "vote"})
    if table.empty:
        raise InputError(f"{source}: no votes")
    check_vote_table(table, source=source)  # every row, gold and training items included
    notes: list[str] = []

    screening = screen_raters(table, opt.screening) if opt.screening is not None else None
    on_study = study_rows(table).to_numpy()
    study = table if on_study.all() else table[on_study]  # no copy of a study without gold or training votes
    if study.empty:
        raise InputError(f"{source}: no votes on study items (only gold or training items)")
    study_items = pd.unique(study["item"])
    all_study = study

    excluded = pd.DataFrame()
    if opt.exclude_flagged and screening is not None and len(screening.flagged):
        drop = study["rater"].isin(screening.flagged).to_numpy()
        excluded, study = study[drop], study[~drop]
        if study.empty:
            raise InputError(f"{source}: the screening flagged every rater; nothing left to analyse")
        lost = pd.Index(study_items).difference(pd.Index(pd.unique(study["item"])))
        if len(lost):
            raise InputError(
                f"{source}: {len(lost)} item(s) were rated only by raters the screening flagged "
                f"({', '.join(map(repr, lost[:5]))}); run without excluding flagged raters"
            )
        notes.append(f"{len(pd.unique(excluded['rater']))} rater(s) flagged by the screening left out before fitting")

    content_col = _content_column(study, opt.content_col)
    votes = prepare_votes(study, content_col=content_col, items=study_items, source=source)
    result = fit_subject_model(votes, opt.model, ci=opt.ci, solver=opt.solver, min_rater_votes=opt.min_rater_votes)

    if screening is not None:
        flagged = screening.table["reason"].where(screening.table["flagged"])
        kept_flagged = result.raters.index.intersection(screening.flagged)
        for rater in kept_flagged:
            prefix = result.raters.at[rater, "reason"]
            extra = f"flagged, kept: {flagged[rater]}" if not result.raters.at[rater, "rejected"] else flagged[rater]
            result.raters.at[rater, "reason"] = f"{prefix}; {extra}" if prefix else extra
        if not excluded.empty:
            extra_rows = _excluded_rater_rows(excluded, result.scores, flagged)
            result.raters = pd.concat([result.raters, extra_rows.loc[~extra_rows.index.isin(result.raters.index)]])
            result.raters = result.raters.sort_index()

    rejected = result.raters["rejected"].reindex(votes.raters).fillna(False).to_numpy(bool)
    kept = votes.subset(~rejected[votes.rater]) if rejected.any() else votes
    agreement = None
    if opt.agreement_splits > 0:
        try:
            agreement = split_half_agreement(
                kept, n_splits=opt.agreement_splits, seed=opt.seed, max_votes=opt.agreement_max_votes
            )
            if agreement.subsampled:
                notes.append(
                    f"split-half agreement measured on a random {agreement.n_items:,} of the "
                    f"{agreement.n_items_eligible:,} items with 2 or more votes "
                    f"(above {opt.agreement_max_votes:,} votes)"
                )
        except InputError as exc:
            notes.append(f"split-half agreement not computed: {exc}")
    reliability = None
    if opt.reliability:
        reliability = measure_reliability(
            kept, n_boot=opt.reliability_boot, seed=opt.seed, max_boot_votes=opt.reliability_max_boot_votes
        )
        notes.extend(reliability.notes)
    study_votes = votes
    if not excluded.empty:  # the raters left out of the fit still get their QA row
        study_votes = prepare_votes(all_study, content_col=content_col, items=study_items, source=source)
    if content_col is not None:
        notes.append(f"content groups from column {content_col!r} ({votes.n_contents} contents)")

    return Analysis(
        result=result,
        item_stats=item_statistics(votes),
        screening=screening,
        agreement=agreement,
        n_votes=votes.n_votes,
        source=source,
        notes=notes + result.notes,
        reliability=reliability,
        study_votes=study_votes,
    )


def clean_labels(frame: pd.DataFrame, model: ModelName = "mle_co", **options: Unpack[CleanOptions]) -> pd.DataFrame:
    """Cleaned per-item labels for the converters: ``item, score, sd, std, ci_low, ci_high, n``.

    ``options`` are :class:`AnalysisOptions` fields (``ci``, ``exclude_flagged``, column names...).
    The agreement and reliability are skipped here; run :func:`analyze_votes` for the full picture.
    """
    opts = AnalysisOptions(model=model, agreement_splits=0, reliability=False, **options)
    return analyze_votes(frame, opts).result.mos_table()
