"""Rater screening beyond the subject models: gold items, straightlining, response times,
agreement with the other raters. One table, one row per rater, one readable reason per flag.

Works on the long vote table as the store exports it (``item, rater, vote`` plus, when present,
``role``, ``expected_level``, ``tolerance``, ``response_ms``, ``shown_at``, ``answered_at``).
A check whose columns are absent is skipped: its metric is NaN in the table and it flags nobody.

* Gold items (``role == 'gold'``, or any row with an expected level when there is no role
  column): a vote is correct when within ``tolerance`` levels of the expected one.
* Straightlining: the share of a rater's votes on their most used level, and the longest run
  of identical consecutive answers (in answer order when ``answered_at`` is given).
* Response time: the share of votes answered faster than ``fast_ms``, and the rater's median
  time compared with the other raters' (robust z-score of the log median, MAD-based).
* Agreement: Pearson correlation of the rater's votes with the mean of the *other* raters'
  votes on the same items (test items only).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from toolkit.analysis.votes import check_vote_table, factorize_sorted
from toolkit.errors import InputError


@dataclass(frozen=True)
class ScreeningConfig:
    """Thresholds; a rater is flagged by any one check."""

    gold_min_accuracy: float = 0.75
    gold_min_votes: int = 3  # fewer gold votes than this are too few to judge a rater by
    gold_tolerance: int = 1  # used when the table has no tolerance column
    straightline_share: float = 0.9
    straightline_min_votes: int = 10
    straightline_run: int = 20
    fast_ms: float = 1000.0
    max_fast_share: float = 0.25
    time_z: float = 3.5
    min_correlation: float = 0.5
    correlation_min_votes: int = 5


@dataclass
class ScreeningReport:
    """``table``: index ``rater``; metrics, ``flagged`` and ``reason`` (``'; '``-joined)."""

    table: pd.DataFrame
    config: ScreeningConfig

    @property
    def flagged(self) -> pd.Index:
        return self.table.index[self.table["flagged"]]

    def reasons(self) -> pd.Series:
        return self.table.loc[self.table["flagged"], "reason"]


def study_rows(frame: pd.DataFrame, role_col: str = "role") -> pd.Series:
    """Rows that are study items (not gold or training items)."""
    if role_col not in frame.columns:
        return pd.Series(True, index=frame.index)
    return frame[role_col].isna() | (frame[role_col] == "test")


def _gold_rows(frame: pd.DataFrame, role_col: str, expected_col: str) -> np.ndarray:
    if role_col in frame.columns:
        gold = (frame[role_col] == "gold").to_numpy()
        if expected_col in frame.columns:
            lacking = gold & frame[expected_col].isna().to_numpy()
        else:
            lacking = gold
        if lacking.any():
            first = frame.index[np.flatnonzero(lacking)[0]]
            raise InputError(f"gold vote in row {first} (item {frame.loc[first].get('item')!r}) has no expected level")
        return gold
    if expected_col in frame.columns:
        return frame[expected_col].notna().to_numpy()
    return np.zeros(len(frame), dtype=bool)


def _response_ms(frame: pd.DataFrame, response_col: str, shown_col: str, answered_col: str) -> np.ndarray | None:
    if response_col in frame.columns and frame[response_col].notna().any():
        return pd.to_numeric(frame[response_col], errors="coerce").to_numpy(dtype=float)
    if shown_col in frame.columns and answered_col in frame.columns:
        if frame[shown_col].isna().all() or frame[answered_col].isna().all():
            return None  # no vote has both times (imported votes carry no display time)
        shown = pd.to_datetime(frame[shown_col], errors="coerce", utc=True)
        answered = pd.to_datetime(frame[answered_col], errors="coerce", utc=True)
        ms = (answered - shown).dt.total_seconds().to_numpy(dtype=float) * 1000.0
        return ms if np.isfinite(ms).any() else None
    return None


def _longest_runs(rater: np.ndarray, vote: np.ndarray, order_key: np.ndarray, n_raters: int) -> np.ndarray:
    if order_key.size < 2 or (order_key[1:] >= order_key[:-1]).all():
        # Already in answer order (votes read oldest first; an import's share one time): a stable
        # sort by rater is the same order as the two-key sort; on 16-bit codes numpy sorts by radix.
        order = np.argsort(rater.astype(np.int16) if n_raters < 2**15 else rater, kind="stable")
    else:
        order = np.lexsort((order_key, rater))
    r, v = rater[order], vote[order]
    del order
    start = np.ones(r.size, dtype=bool)
    start[1:] = (r[1:] != r[:-1]) | (v[1:] != v[:-1])
    first = np.flatnonzero(start)  # where each run begins
    del start, v
    lengths = np.diff(first, append=r.size)
    run_rater = r[first]
    # The runs come rater by rater: each rater's longest is one maximum over its stretch of runs.
    rater_first = np.flatnonzero(np.r_[True, run_rater[1:] != run_rater[:-1]]) if first.size else first
    longest = np.zeros(n_raters, dtype=np.int64)
    longest[run_rater[rater_first]] = np.maximum.reduceat(lengths, rater_first) if first.size else 0
    return longest


LOO_CHUNK_VOTES = 1 << 22
"""Votes formed at a time in :func:`_loo_correlation`: its temporaries stay some 100 MB whatever the
study's size (at 50 M votes, whole-vote temporaries were the analysis' peak)."""


def _loo_correlation(
    item: np.ndarray, rater: np.ndarray, vote: np.ndarray, n_raters: int, min_votes: int
) -> np.ndarray:
    """Per rater: Pearson r between their votes and the other raters' mean on the same items.

    ``item``: non-negative item codes (any range; only equal codes matter). Votes on an item no
    one else rated are left out. The per-vote quantities are formed a chunk of votes at a time and
    summed per rater: centred sums in two passes (no cancellation), as grouped.group_moments forms them.
    """
    n_e = np.bincount(item)
    total = np.bincount(item, weights=vote)
    others = n_e - 1  # per item: how many other votes its mean is over

    def chunks() -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(rater, vote, the others' mean) of the usable votes, chunk by chunk."""
        for start in range(0, vote.size, LOO_CHUNK_VOTES):
            part = slice(start, start + LOO_CHUNK_VOTES)
            it, s, x = item[part], rater[part], vote[part].astype(np.float64)
            keep = others[it] >= 1
            if not keep.all():
                it, s, x = it[keep], s[keep], x[keep]
            y = total[it]
            y -= x
            y /= others[it]
            yield s, x, y

    n = np.zeros(n_raters, dtype=np.int64)
    sum_x, sum_y = np.zeros(n_raters), np.zeros(n_raters)
    for s, x, y in chunks():
        n += np.bincount(s, minlength=n_raters)
        sum_x += np.bincount(s, weights=x, minlength=n_raters)
        sum_y += np.bincount(s, weights=y, minlength=n_raters)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_x, mean_y = sum_x / n, sum_y / n
        sxy, sxx, syy = np.zeros(n_raters), np.zeros(n_raters), np.zeros(n_raters)
        for s, x, y in chunks():
            x -= mean_x[s]
            y -= mean_y[s]
            sxx += np.bincount(s, weights=x * x, minlength=n_raters)
            syy += np.bincount(s, weights=y * y, minlength=n_raters)
            x *= y
            sxy += np.bincount(s, weights=x, minlength=n_raters)
        sxy, sxx, syy = sxy / n, sxx / n, syy / n
        r = sxy / np.sqrt(sxx * syy)
    return np.where((n >= min_votes) & (sxx > 0) & (syy > 0), r, np.nan)


def screen_raters(
    frame: pd.DataFrame,
    config: ScreeningConfig | None = None,
    item_col: str = "item",
    rater_col: str = "rater",
    vote_col: str = "vote",
    role_col: str = "role",
    expected_col: str = "expected_level",
    tolerance_col: str = "tolerance",
    response_col: str = "response_ms",
    shown_col: str = "shown_at",
    answered_col: str = "answered_at",
) -> ScreeningReport:
    """Screen every rater in ``frame``; see the module docstring for the checks."""
    cfg = config or ScreeningConfig()
    for col in (item_col, rater_col, vote_col):
        if col not in frame.columns:
            raise InputError(f"screening: missing column {col!r}; found {', '.join(map(str, frame.columns))}")
    if frame.empty:
        raise InputError("screening: no votes")
    vote = check_vote_table(frame, item_col, rater_col, vote_col, source="screening")
    frame = frame.reset_index(drop=True)
    rater, raters = factorize_sorted(frame[rater_col])
    rater = rater.astype(np.int32 if len(raters) < 2**31 else np.int64)  # half the bytes of the int64 codes
    n_r = len(raters)
    n_votes = np.bincount(rater, minlength=n_r)
    table = pd.DataFrame(index=pd.Index(raters, name="rater"))
    table["n_votes"] = n_votes
    reasons: list[list[str]] = [[] for _ in range(n_r)]

    def flag(mask: np.ndarray, texts: list[str]) -> None:
        for i in np.flatnonzero(mask):
            reasons[i].append(texts[i])

    # Gold items.
    gold = _gold_rows(frame, role_col, expected_col)
    if gold.any():
        expected = pd.to_numeric(frame[expected_col], errors="coerce").to_numpy(dtype=float)
        tolerance = (
            pd.to_numeric(frame[tolerance_col], errors="coerce").fillna(cfg.gold_tolerance).to_numpy()
            if tolerance_col in frame.columns
            else np.full(len(frame), float(cfg.gold_tolerance))
        )
        correct = gold & (np.abs(vote - expected) <= tolerance)
        g_n = np.bincount(rater, weights=gold, minlength=n_r)
        g_ok = np.bincount(rater, weights=correct, minlength=n_r)
        with np.errstate(invalid="ignore", divide="ignore"):
            accuracy = np.where(g_n > 0, g_ok / g_n, np.nan)
        table["gold_votes"] = g_n.astype(int)
        table["gold_accuracy"] = accuracy
        bad = (g_n >= cfg.gold_min_votes) & (accuracy < cfg.gold_min_accuracy)
        flag(
            bad,
            [
                f"gold items: {int(k)} of {int(n)} correct ({acc:.0%} < {cfg.gold_min_accuracy:.0%})"
                for k, n, acc in zip(g_ok, g_n, accuracy)
            ],
        )
    else:
        table["gold_votes"] = 0
        table["gold_accuracy"] = np.nan

    # Straightlining: on every vote the rater cast (gold included: a straightliner answers those
    # the same way too).
    level_code = rater.astype(np.int64)  # rater x level, formed in place: one temporary the size of the votes
    level_code *= 5
    level_code += vote.astype(np.int64)
    level_code -= 1
    hist = np.bincount(level_code, minlength=n_r * 5).reshape(n_r, 5)
    del level_code
    modal = hist.max(axis=1) / np.maximum(n_votes, 1)
    table["modal_share"] = modal
    many = n_votes >= cfg.straightline_min_votes
    flag(
        many & (modal >= cfg.straightline_share),
        [f"straightlining: {m:.0%} of {n} votes on one level" for m, n in zip(modal, n_votes)],
    )
    if answered_col in frame.columns:
        answered = frame[answered_col]
        if pd.api.types.is_datetime64_any_dtype(answered.dtype):
            # Already times (the store's): their ticks order them, no parse needed.
            complete = bool(answered.notna().all())
            order_key = answered.array.asi8 if complete else np.arange(len(frame))
        else:
            answered = pd.to_datetime(answered, errors="coerce", utc=True)
            order_key = answered.astype("int64").to_numpy() if answered.notna().all() else np.arange(len(frame))
    else:
        order_key = np.arange(len(frame))
    # The votes are levels 1-5 (checked above): compared as one byte each, not eight.
    runs = _longest_runs(rater, vote.astype(np.int8), order_key, n_r)
    table["longest_run"] = runs
    flag(runs >= cfg.straightline_run, [f"straightlining: {k} identical answers in a row" for k in runs])

    # Response times.
    ms = _response_ms(frame, response_col, shown_col, answered_col)
    if ms is not None:
        timed = np.isfinite(ms)
        t_frame = pd.DataFrame({"rater": rater[timed], "ms": ms[timed]})
        median = t_frame.groupby("rater")["ms"].median().reindex(range(n_r)).to_numpy()
        fast = np.bincount(rater[timed], weights=ms[timed] < cfg.fast_ms, minlength=n_r)
        n_timed = np.bincount(rater[timed], minlength=n_r)
        with np.errstate(invalid="ignore", divide="ignore"):
            fast_share = np.where(n_timed > 0, fast / n_timed, np.nan)
            log_med = np.log(np.maximum(median, 1.0))
        centre = np.nanmedian(log_med)
        mad = 1.4826 * np.nanmedian(np.abs(log_med - centre))
        with np.errstate(invalid="ignore", divide="ignore"):
            z = np.where(mad > 0, (log_med - centre) / mad, 0.0)
        table["median_response_ms"] = median
        table["fast_share"] = fast_share
        table["response_z"] = z
        flag(
            fast_share > cfg.max_fast_share,
            [f"too fast: {f:.0%} of votes under {cfg.fast_ms:.0f} ms" for f in fast_share],
        )
        flag(
            z < -cfg.time_z,
            [
                f"too fast: median {m:.0f} ms, far below the other raters (robust z {zz:.1f})"
                for m, zz in zip(median, z)
            ],
        )
    else:
        table["median_response_ms"] = np.nan
        table["fast_share"] = np.nan
        table["response_z"] = np.nan

    # Agreement with the others on the study items.
    test = study_rows(frame, role_col).to_numpy()
    # Item codes, not the item texts: a categorical column (the store's) is coded already, its codes
    # used as they are (no missing id: checked above; only equal codes matter).
    items = frame[item_col]
    if isinstance(items.dtype, pd.CategoricalDtype):
        item_code = items.cat.codes.to_numpy()
    else:
        item_code, item_names = pd.factorize(items.astype(str) if items.dtype == object else items)
        item_code = item_code.astype(np.int32 if len(item_names) < 2**31 else np.int64)
    if test.all():  # no gold or training votes: the arrays as they are, no copies
        corr = _loo_correlation(item_code, rater, vote, n_r, cfg.correlation_min_votes)
    else:
        corr = _loo_correlation(item_code[test], rater[test], vote[test], n_r, cfg.correlation_min_votes)
    table["correlation"] = corr
    flag(corr < cfg.min_correlation, [f"low agreement: r = {r:.2f} with the other raters' mean" for r in corr])

    table["flagged"] = [bool(r) for r in reasons]
    table["reason"] = ["; ".join(r) for r in reasons]
    return ScreeningReport(table, cfg)
