"""Iterations that fit the subject model ``X = x_item + b_rater + N(0, v_rater^2 + a_content^2)``.

Speed comes from the structure of the model, not from approximations. A vote's variance depends
only on its (rater, content) *pair*, and every update of sureal's iteration is a sum over votes
of terms that are linear in the vote's residual or squared residual. So per iteration the votes
are touched only through a few sparse matrix-vector products (items x pairs) that give, per
pair, the sums of ``X - x`` and ``(X - x)^2``; the bias, inconsistency and ambiguity updates
then run on the pairs (at most raters x contents, usually far fewer than votes). The sums are
the same numbers sureal forms, added in another order.

Two solvers:

* :func:`solve_sureal` repeats sureal 0.9.0's belief-propagation updates step for step: the same
  start (MOS, residual SDs), the same damped updates (10 % of the Newton / weighted-mean step per
  iteration) in the same order, the same stop (L2 change of the item scores below ``tol``). It
  is needed for the model with content ambiguity, whose answer depends on the path: the
  likelihood only sees ``v^2 + a^2``, so adding a constant to every ``v^2`` and taking it from
  every ``a^2`` changes nothing, and sureal's output is where its iterations happen to stop
  along that ridge. Following the same path gives the same numbers.
* :func:`solve_fast` fits the content-oblivious model (no ambiguity term), whose stationary
  point does not depend on the path, by exact block updates: the bias is the mean residual, the
  inconsistency the RMS residual, the score the inverse-variance weighted mean. It reaches the
  point sureal converges to in a few dozen undamped iterations instead of hundreds of damped ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse

# Floor on a vote's variance so that a rater and a content that both collapse to zero spread
# cannot divide by zero; far below any variance a 1-5 vote can show.
_MIN_VARIANCE = 1e-12


@dataclass
class MleState:
    """Parameters in code order, before the zero-mean bias convention is applied."""

    x: np.ndarray  # item scores
    b: np.ndarray  # rater bias
    v: np.ndarray  # rater inconsistency (SD)
    a: np.ndarray  # content ambiguity (SD); zeros for the content-oblivious model
    iterations: int
    converged: bool


def _items_by_pairs(
    X: np.ndarray, e: np.ndarray, pair: np.ndarray, n_items: int, n_pairs: int
) -> tuple[sparse.csr_matrix, sparse.csr_matrix]:
    """Items x pairs CSR matrices of vote counts and vote sums, sharing indices and row pointers.

    One entry per vote, rows in item order: a (rater, content) pair voting twice on an item has
    two entries in the row, which the products add up like one entry holding their sum (only
    the matrix-vector products use these matrices). Votes already in item order (an import's,
    usually) are used as they are, without a sort or a copy of the votes.
    """
    index_type = np.int32 if max(n_items, n_pairs, e.size) < 2**31 else np.int64
    if e.size > 1 and not (e[1:] >= e[:-1]).all():
        order = np.argsort(e, kind="stable")  # stable: each row's votes stay in vote order
        X, pair = X[order], pair[order]
        del order
    indices = pair.astype(index_type, copy=False)
    indptr = np.zeros(n_items + 1, dtype=index_type)
    np.cumsum(np.bincount(e, minlength=n_items), out=indptr[1:])
    shape = (n_items, n_pairs)
    counts = np.ones(e.size, dtype=X.dtype)
    return (
        sparse.csr_matrix((counts, indices, indptr), shape=shape, copy=False),
        sparse.csr_matrix((X, indices, indptr), shape=shape, copy=False),
    )


class Design:
    """The votes arranged for the iterations: per-vote codes and per-pair sparse sums.

    ``c`` is the content of each vote. A *pair* is a (rater, content) combination that occurs.
    """

    def __init__(
        self, X: np.ndarray, e: np.ndarray, s: np.ndarray, c: np.ndarray, n_items: int, n_raters: int, n_contents: int
    ) -> None:
        self.X, self.e, self.s, self.c = X, e, s, c
        self.n_items, self.n_raters, self.n_contents = n_items, n_raters, n_contents
        if n_contents == 1:
            # The pairs are the raters that have votes, in code order (what np.unique gives),
            # found by counting instead of sorting every vote.
            present = np.bincount(s, minlength=n_raters) > 0
            pair_key = np.flatnonzero(present)
            self.pair = (np.cumsum(present) - 1).astype(np.int32 if n_raters < 2**31 else np.int64)[s]
        else:
            pair_key, pair = np.unique(s * np.int64(n_contents) + c, return_inverse=True)
            self.pair = pair.ravel()
        self.pair_rater = pair_key // n_contents
        self.pair_content = pair_key % n_contents
        n_pairs = pair_key.size
        self.n_pairs = n_pairs
        # Items x pairs: vote counts and vote sums (duplicates add up, so repeated votes work).
        # Both share one sparsity structure, built once; the pairs x items products use the
        # transposes as views (no copy): 20 bytes a vote instead of 48.
        self.count_ep, self.sum_ep = _items_by_pairs(X, e, self.pair, n_items, n_pairs)
        self.count_pe = self.count_ep.T
        self.sum_pe = self.sum_ep.T
        self.n_p = np.bincount(self.pair, minlength=n_pairs).astype(float)
        self.sx_p = np.bincount(self.pair, weights=X, minlength=n_pairs)
        self.sxx_p = np.bincount(self.pair, weights=X * X, minlength=n_pairs)
        self.n_s = np.bincount(s, minlength=n_raters).astype(float)

    def per_rater(self, pair_values: np.ndarray) -> np.ndarray:
        return np.bincount(self.pair_rater, weights=pair_values, minlength=self.n_raters)

    def per_content(self, pair_values: np.ndarray) -> np.ndarray:
        return np.bincount(self.pair_content, weights=pair_values, minlength=self.n_contents)

    def residual_sums(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per pair: sum of ``X - x_item`` and of ``(X - x_item)^2`` over its votes."""
        d = self.sx_p - self.count_pe @ x
        t = self.sxx_p - 2.0 * (self.sum_pe @ x) + self.count_pe @ (x * x)
        return d, np.maximum(t, 0.0)

    def weighted_item_mean(self, b: np.ndarray, w_p: np.ndarray) -> np.ndarray:
        """Per item: sum of ``w (X - b_rater)`` over sum of ``w``, with ``w`` given per pair."""
        num = self.sum_ep @ w_p - self.count_ep @ (b[self.pair_rater] * w_p)
        return num / (self.count_ep @ w_p)


def initial_state(d: Design, content_ambiguity: bool) -> MleState:
    """sureal's start: scores = MOS, bias = 0, inconsistency (and ambiguity) = population SD of
    the residuals from the MOS over each rater's (each content's) votes."""
    n_e = np.bincount(d.e, minlength=d.n_items)
    mos = np.bincount(d.e, weights=d.X, minlength=d.n_items) / n_e
    r = mos[d.e]  # the residuals from the MOS, formed in place (one array the size of the votes)
    np.subtract(d.X, r, out=r)

    def sd(codes: np.ndarray, n_groups: int) -> np.ndarray:
        n = np.bincount(codes, minlength=n_groups)
        mean = np.bincount(codes, weights=r, minlength=n_groups) / n
        dev = mean[codes]
        np.subtract(r, dev, out=dev)
        dev *= dev
        return np.sqrt(np.bincount(codes, weights=dev, minlength=n_groups) / n)

    # Raters left out of the fit keep their code but have no votes: NaN for them, unused.
    with np.errstate(invalid="ignore", divide="ignore"):
        v = sd(d.s, d.n_raters)
        a = sd(d.c, d.n_contents) if content_ambiguity else np.zeros(d.n_contents)
    return MleState(mos, np.zeros(d.n_raters), v, a, 0, False)


def solve_sureal(
    d: Design, content_ambiguity: bool, tol: float = 1e-8, max_iter: int = 10000, refresh: float = 0.1
) -> MleState:
    """sureal's damped belief propagation (``gradient_method='simplified'``) on pair sums."""
    st = initial_state(d, content_ambiguity)
    x, b, v, a = st.x, st.b, st.v, st.a
    ps, pc, n_p = d.pair_rater, d.pair_content, d.n_p
    keep = 1.0 - refresh
    a2 = a[pc] ** 2
    converged = False
    it = 0
    # A study that drives some variance to zero overflows here; the caller checks the result.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for it in range(1, max_iter + 1):  # noqa: B007  (`it` is read after the loop: iterations run)
            x_prev = x
            dev, dev2 = d.residual_sums(x)  # sums of (X - x) and (X - x)^2 per pair
            # Rater bias: damped inverse-variance weighted mean residual.
            vs2 = v[ps] ** 2
            w = 1.0 / np.maximum(vs2 + a2, _MIN_VARIANCE)
            b = keep * b + refresh * (d.per_rater(w * dev) / d.per_rater(w * n_p))
            # Sum of squared residuals r = X - x - b per pair, from the sums above.
            bp = b[ps]
            r2 = np.maximum(dev2 - 2.0 * bp * dev + n_p * bp * bp, 0.0)
            # Rater inconsistency: damped Newton step on the log-likelihood, kept non-negative.
            vs = np.sqrt(vs2)
            w2 = w * w
            grad = vs * (r2 * w2 - n_p * w)
            curv = (vs2 - a2) * w2 * n_p + r2 * (a2 * a2 - 3 * vs2 * vs2 - 2 * vs2 * a2) * (w2 * w2)
            v = np.maximum(v - refresh * d.per_rater(grad) / d.per_rater(curv), 0.0)
            vs2 = v[ps] ** 2
            w = 1.0 / np.maximum(vs2 + a2, _MIN_VARIANCE)
            if content_ambiguity:
                # Content ambiguity: the same damped Newton step, summed over the content's votes.
                w2 = w * w
                grad = np.sqrt(a2) * (r2 * w2 - n_p * w)
                curv = -(vs2 - a2) * w2 * n_p + r2 * (vs2 * vs2 - 3 * a2 * a2 - 2 * vs2 * a2) * (w2 * w2)
                a = np.maximum(a - refresh * d.per_content(grad) / d.per_content(curv), 0.0)
                a2 = a[pc] ** 2
                w = 1.0 / np.maximum(vs2 + a2, _MIN_VARIANCE)
            # Item score: damped inverse-variance weighted mean of the bias-corrected votes.
            x = keep * x + refresh * d.weighted_item_mean(b, w)
            if np.linalg.norm(x - x_prev) < tol:
                converged = True
                break
    return MleState(x, b, v, a, it, converged)


def solve_fast(d: Design, tol: float = 1e-10, max_iter: int = 10000) -> MleState:
    """Content-oblivious MLE by exact block coordinate ascent (each step maximises the
    likelihood in one block given the others, so the likelihood never decreases)."""
    st = initial_state(d, content_ambiguity=False)
    x, b, v = st.x, st.b, st.v
    ps, n_p = d.pair_rater, d.n_p
    fitted = d.n_s > 0  # raters left out of the fit have no votes
    n_s = np.where(fitted, d.n_s, 1.0)
    converged = False
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007  (`it` is read after the loop: iterations run)
        x_prev, b_prev, v_prev = x, b, v
        dev, dev2 = d.residual_sums(x)
        # With one variance per rater, the best bias given the scores is the plain mean residual.
        b = d.per_rater(dev) / n_s
        bp = b[ps]
        v2 = np.maximum(d.per_rater(np.maximum(dev2 - 2.0 * bp * dev + n_p * bp * bp, 0.0)) / n_s, _MIN_VARIANCE)
        v = np.sqrt(v2)
        x = d.weighted_item_mean(b, 1.0 / v2[ps])
        change = max(np.abs(x - x_prev).max(), np.abs(b - b_prev)[fitted].max(), np.abs(v - v_prev)[fitted].max())
        if change < tol:
            converged = True
            break
    return MleState(x, b, v, np.zeros(d.n_contents), it, converged)
