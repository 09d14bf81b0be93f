"""The MLE subject model (ITU-T P.910 Annex E, P.913 12.6, Netflix sureal ``MLE``/``MLE_CO``).

Each vote is modelled as ``X = x_item + b_rater + v_rater * e + a_content * e'`` with
``e, e' ~ N(0, 1)``: true quality, rater bias, rater inconsistency and (optionally) content
ambiguity. Partial sampling is the normal case: only cast votes enter the likelihood.

Uncertainties are sureal's: the standard error of a score is ``1 / sqrt(sum 1 / (v^2 + a^2))``
over its votes (CI = +- 1.95996 standard errors), likewise for a bias; the inconsistency interval
is the chi-square interval for an SD estimated from the rater's ``n`` votes; the ambiguity
standard error comes from the curvature of the log-likelihood (infinite where the estimate sits
on its zero boundary). Biases are reported with zero mean over the raters in the fit, the
scores shifted to match (the likelihood cannot tell the two apart).

Raters with fewer than ``min_rater_votes`` votes are left out of the fit (their inconsistency
cannot be estimated: one vote always fits perfectly) and reported as rejected with the reason.

The likelihood has no upper bound: fitting one rater's votes exactly (moving the scores of the
items it rated) and letting its variance go to zero makes it infinite. With many votes per item
the iteration stays clear of that, but with few (about ten or fewer per item, or few votes per
rater and content for the ``mle`` model) it can fall in; sureal then returns an inconsistency of
1e-15 and scores that copy that rater. Such a fit is refused here with an error naming the
raters, rather than returned.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from toolkit.analysis.grouped import group_mean, group_sd
from toolkit.analysis.mle_solvers import Design, MleState, solve_fast, solve_sureal
from toolkit.analysis.mos import Z95
from toolkit.analysis.result import SubjectModelResult, inconsistency_interval, item_frame, rater_frame
from toolkit.analysis.votes import Votes
from toolkit.errors import InputError

Solver = Literal["auto", "sureal", "fast"]


def _design(votes: Votes, content_ambiguity: bool = True) -> Design:
    if not content_ambiguity:
        # Without an ambiguity term a vote's variance is its rater's alone: one content for all
        # makes the (rater, content) pairs the raters, and every per-pair sum a per-rater sum.
        return Design(
            X=np.asarray(votes.vote, dtype=float),  # the votes' own array when already float
            e=votes.item,
            s=votes.rater,
            c=np.zeros(votes.n_votes, dtype=np.int8),
            n_items=votes.n_items,
            n_raters=votes.n_raters,
            n_contents=1,
        )
    return Design(
        X=np.asarray(votes.vote, dtype=float),  # the votes' own array when already float
        e=votes.item,
        s=votes.rater,
        c=votes.content[votes.item],
        n_items=votes.n_items,
        n_raters=votes.n_raters,
        n_contents=votes.n_contents,
    )


def fit_mle(
    votes: Votes,
    content_ambiguity: bool = True,
    solver: Solver = "auto",
    min_rater_votes: int = 2,
    tol: float | None = None,
    max_iter: int = 10000,
) -> SubjectModelResult:
    """Fit the MLE subject model; ``content_ambiguity=False`` is sureal's ``MLE_CO``.

    ``solver="auto"`` uses the exact block updates for the content-oblivious model and sureal's
    damped iterations for the model with content ambiguity (whose rater/content variance split
    depends on the iteration path; see :mod:`toolkit.analysis.mle_solvers`). ``tol`` defaults to
    sureal's 1e-8 for the damped solver and 1e-10 for the fast one.
    """
    if solver not in ("auto", "sureal", "fast"):
        raise InputError(f"unknown MLE solver {solver!r}; use 'auto', 'sureal' or 'fast'")
    if solver == "fast" and content_ambiguity:
        raise InputError(
            "the fast MLE solver fits the content-oblivious model only; use solver='sureal' "
            "(or 'auto') with content ambiguity"
        )
    model = "mle" if content_ambiguity else "mle_co"

    counts = votes.rater_counts()
    sparse = counts < min_rater_votes
    fitted = votes.subset(~sparse[votes.rater]) if sparse.any() else votes
    n_e = fitted.item_counts()
    if (n_e == 0).any():
        lost = votes.items[n_e == 0]
        raise InputError(
            f"{model}: item(s) {', '.join(map(repr, lost[:5]))} have only votes from raters with fewer than "
            f"{min_rater_votes} votes; the MLE cannot score them (use model 'mos', or collect more votes)"
        )
    if (~sparse).sum() < 2:
        raise InputError(f"{model}: the MLE needs at least two raters with {min_rater_votes} or more votes")

    d = _design(fitted, content_ambiguity)
    use_fast = solver == "fast" or (solver == "auto" and not content_ambiguity)
    if use_fast:
        state = solve_fast(d, tol=1e-10 if tol is None else tol, max_iter=max_iter)
    else:
        state = solve_sureal(d, content_ambiguity, tol=1e-8 if tol is None else tol, max_iter=max_iter)

    _check_not_degenerate(model, votes, d, state)
    result = _assemble(model, votes, fitted, d, state, sparse, min_rater_votes, content_ambiguity)
    return result.check_finite()


# A vote variance below this (SD 1e-4 on a 1-5 scale) means the fit has collapsed onto a
# singularity of the likelihood rather than found a maximum.
_DEGENERATE_VARIANCE = 1e-8
_RUNAWAY_VARIANCE = 16.0  # SD 4: twice the largest spread votes on a 1-5 scale can have


def _check_not_degenerate(model: str, votes: Votes, d: Design, st: MleState) -> None:
    """Raise when some votes were given (near) zero variance.

    The likelihood grows without bound when a rater's (or a rater-content pair's) votes are
    fitted exactly and their variance shrinks to zero; the iteration then runs into that
    singularity instead of a maximum and its numbers mean nothing (sureal returns them anyway).
    """
    var = st.v[d.pair_rater] ** 2 + st.a[d.pair_content] ** 2
    # NaN counts as degenerate too; so does a spread no 1-5 vote can have (the iteration then
    # ran away from the same singularity in the other direction).
    bad = ~((var >= _DEGENERATE_VARIANCE) & (var <= _RUNAWAY_VARIANCE))
    if not bad.any():
        return
    if model == "mle":
        names = [
            f"rater {votes.raters[r]!r} on content {votes.contents[c]!r}"
            for r, c in zip(d.pair_rater[bad], d.pair_content[bad])
        ]
    else:
        names = [f"rater {votes.raters[r]!r}" for r in d.pair_rater[bad]]
    names = list(dict.fromkeys(names))
    pairs = names[:3] + (["..."] if len(names) > 3 else [])
    per_item = int(np.median(np.bincount(d.e, minlength=d.n_items)))
    where = "rater and content" if model == "mle" else "rater"
    advice = "model 'mle_co' or coarser content groups" if model == "mle" else "model 'p913' or 'mos'"
    raise InputError(
        f"{model}: the fit degenerated for {', '.join(pairs)}: "
        f"their votes are fitted exactly and their variance runs to zero (or away), a singularity of the "
        f"likelihood that few votes per {where} make easy to fall into (median {per_item} votes per item). "
        f"sureal returns such fits without a warning; use {advice}, or collect more votes per item"
    )


def _assemble(
    model: str,
    votes: Votes,
    fitted: Votes,
    d: Design,
    st: MleState,
    sparse: np.ndarray,
    min_rater_votes: int,
    content_ambiguity: bool,
) -> SubjectModelResult:
    in_fit = ~sparse
    # Zero-mean bias over the raters in the fit; the likelihood is unchanged by the shift.
    shift = st.b[in_fit].mean()
    x = st.x + shift
    b = st.b - shift
    v, a = st.v, st.a

    # A vote's weight 1 / (v^2 + a^2) is its (rater, content) pair's: summed per pair, not per vote.
    with np.errstate(divide="ignore", invalid="ignore"):
        w_p = 1.0 / (v[d.pair_rater] ** 2 + a[d.pair_content] ** 2)
        x_std = 1.0 / np.sqrt(d.count_ep @ w_p)
        b_std = 1.0 / np.sqrt(d.per_rater(w_p * d.n_p))
    v_low, v_high = inconsistency_interval(v, fitted.rater_counts())

    corrected = b[fitted.rater]  # the bias-corrected votes, formed in place
    np.subtract(fitted.vote, corrected, out=corrected)
    items = item_frame(
        votes,
        x,
        x_std,
        group_sd(fitted.item, corrected, votes.n_items, ddof=1, overwrite=True),  # used up: not read again
        x - Z95 * x_std,
        x + Z95 * x_std,
        fitted.item_counts(),
    )

    reasons = np.array([""] * votes.n_raters, dtype=object)
    if sparse.any():
        # Left-out raters get the descriptive numbers against the fitted scores, from their own
        # votes only (a few; the whole study's residuals would be four vote-sized arrays).
        own = np.flatnonzero(sparse[votes.rater])
        rater_own = votes.rater[own]
        residual = votes.vote[own] - x[votes.item[own]]
        desc_bias = group_mean(rater_own, residual, votes.n_raters)
        rms = np.sqrt(np.maximum(group_mean(rater_own, (residual - desc_bias[rater_own]) ** 2, votes.n_raters), 0.0))
        b = np.where(sparse, desc_bias, b)
        v = np.where(sparse, rms, v)
        b_std = np.where(sparse, np.nan, b_std)
        v_low = np.where(sparse, np.nan, v_low)
        v_high = np.where(sparse, np.nan, v_high)
        reasons[sparse] = f"fewer than {min_rater_votes} votes: left out of the MLE fit"
    raters = rater_frame(votes, b, v, bias_std=b_std, inconsistency_ci=(v_low, v_high), rejected=sparse, reason=reasons)

    contents = None
    if content_ambiguity:
        vs2 = v[d.s] ** 2
        a2 = a[d.c] ** 2
        with np.errstate(divide="ignore", invalid="ignore"):
            w = 1.0 / (vs2 + a2)
        r2 = (d.X - x[d.e] - b[d.s]) ** 2
        with np.errstate(divide="ignore", invalid="ignore"):
            curv = np.bincount(
                d.c,
                weights=-(vs2 - a2) * w**2 + r2 * (vs2**2 - 3 * a2**2 - 2 * vs2 * a2) * w**4,
                minlength=d.n_contents,
            )
            a_std = 1.0 / np.sqrt(np.maximum(0.0, -curv))
        contents = pd.DataFrame(
            {"ambiguity": a, "ambiguity_std": a_std, "n": np.bincount(d.c, minlength=d.n_contents)},
            index=votes.contents.rename("content"),
        )

    notes = []
    if not st.converged:
        notes.append(f"{model}: not converged after {st.iterations} iterations; estimates may be inexact")
    if sparse.any():
        notes.append(f"{int(sparse.sum())} rater(s) with fewer than {min_rater_votes} votes left out of the fit")
    return SubjectModelResult(
        model, items, raters, contents, iterations=st.iterations, converged=st.converged, notes=notes
    )
