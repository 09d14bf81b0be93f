"""Agreement between predicted scores and MOS, with confidence intervals.

Coefficients: SRCC and KRCC (rank), PLCC and RMSE both raw (as the Q-Align reference and pyiqa
report them) and after the 4-parameter logistic of VQEG / ITU-T P.1401,
``y = (b1 - b2) / (1 + exp(-(x - b3) / |b4|)) + b2``. Every coefficient gets a percentile
bootstrap interval over items; the resampling is vectorised: one (draws, items) index matrix,
row-wise ranks and correlations, Kendall's tau-b from item multiplicities, and a batched
Levenberg-Marquardt refit of the logistic per draw. Two models rated on the same items are
compared with a paired bootstrap (same draws for both) and, for PLCC, the Fisher-z test of
P.1401.

The logistic has guard rails, so that the fitted PLCC never rewards a model for ranking the
wrong way round or for a handful of lucky items: the curve is monotone in the direction of the
SRCC (a model whose scores fall as the MOS rises gets a falling curve, and a negative fitted
PLCC: the coefficient is that of the order-keeping transform of the predictions); its scale
``|b4|`` is at least :data:`MIN_SCALE_FRACTION` of the predictions' range (VQEG practice: no step
that sorts the items into two groups); and when it degenerates (fewer than five items, no rank
correlation, no convergence, a flat curve, or no better than a line) a linear fit stands in,
and the report says why. Predictions nearly constant (spread within :data:`NEAR_CONSTANT_SPREAD`
of their magnitude) are flagged in the notes: their correlations rest on tiny differences.

Input handling: NaN or infinite values are an error naming the item; constant predictions
(or constant MOS) are an error, since no correlation is defined. A bootstrap draw that happens
to be constant gives NaN for that draw, and intervals ignore such draws.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np
from scipy import stats
from scipy.optimize import OptimizeWarning, curve_fit

from toolkit.errors import InputError

METRIC_NAMES: tuple[str, ...] = ("srcc", "krcc", "plcc", "rmse", "plcc_logistic", "rmse_logistic")
"""All coefficients of an :class:`AgreementReport`; ``plcc``/``rmse`` are raw (no fit)."""

LOWER_IS_BETTER: frozenset[str] = frozenset({"rmse", "rmse_logistic"})

DEFAULT_BOOT = 1000
MIN_SCALE_FRACTION = 0.05
"""Smallest logistic scale ``|b4|``, as a share of the predictions' range: the curve climbs from
10 % to 90 % of its height over at least a fifth of that range, never in a step."""
NEAR_CONSTANT_SPREAD = 0.02
"""Predictions whose range is within this share of their largest magnitude are flagged."""
_KENDALL_MATRIX_MAX_N = 2000  # beyond this the n x n sign matrices cost more than per-draw scipy calls
_DRAW_CHUNK_CELLS = 4_000_000  # draws x items per vectorised block (bounds memory)


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class MetricResult:
    """One coefficient with its confidence interval; ``method`` says how the interval was made."""

    name: str
    value: float
    ci_low: float
    ci_high: float
    method: str = "bootstrap"

    def to_dict(self) -> dict[str, float | str]:
        return asdict(self)


@dataclass(frozen=True)
class LogisticFit:
    """The fitted mapping from predictions to the MOS scale.

    ``kind`` is ``'logistic'`` (the 4-parameter curve, ``params`` = b1..b4, rising when b1 > b2)
    or ``'linear'`` (``params`` = slope, intercept), the fallback used when the logistic
    degenerates; ``note`` then says why.
    """

    kind: str
    params: tuple[float, ...]
    note: str = ""

    @property
    def increasing(self) -> bool:
        """Whether the mapping keeps the order of the predictions."""
        return self.params[0] > self.params[1] if self.kind == "logistic" else self.params[0] > 0

    def predict(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        if self.kind == "logistic":
            return logistic4(x, *self.params)
        slope, intercept = self.params
        return slope * x + intercept

    def to_dict(self) -> dict[str, object]:
        d: dict[str, object] = {"kind": self.kind, "params": list(self.params)}
        if self.note:
            d["note"] = self.note
        return d


@dataclass
class AgreementReport:
    """All coefficients of one prediction set against the MOS."""

    n: int
    metrics: dict[str, MetricResult]
    fit: LogisticFit
    plcc_fisher: MetricResult
    n_boot: int
    seed: int
    confidence: float
    notes: list[str] = field(default_factory=list)

    def __getitem__(self, name: str) -> MetricResult:
        return self.metrics[name]

    def to_dict(self) -> dict[str, object]:
        return {
            "n": self.n,
            "metrics": {k: v.to_dict() for k, v in self.metrics.items()},
            "plcc_fisher": self.plcc_fisher.to_dict(),
            "fit": self.fit.to_dict(),
            "n_boot": self.n_boot,
            "seed": self.seed,
            "confidence": self.confidence,
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class PairedDifference:
    """``diff = b - a`` of one coefficient for two prediction sets on the same items.

    For RMSE a negative difference means b is better. ``p_value`` is the two-sided bootstrap
    p-value of "no difference"; ``method`` names the test.
    """

    name: str
    a: float
    b: float
    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    method: str = "paired bootstrap"

    def to_dict(self) -> dict[str, float | str]:
        return asdict(self)


# --------------------------------------------------------------------------- input checks


def check_pair(
    pred: Sequence[float] | np.ndarray, mos: Sequence[float] | np.ndarray, items: Sequence[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Both arrays as floats of equal length >= 3, finite and not constant; else InputError."""
    x = np.asarray(pred, dtype=float).ravel()
    y = np.asarray(mos, dtype=float).ravel()
    if x.shape != y.shape:
        raise InputError(f"predictions and MOS differ in length ({x.size} vs {y.size})")
    if x.size < 3:
        raise InputError(f"need at least 3 items to compare predictions with MOS, got {x.size}")
    for name, arr in (("prediction", x), ("MOS", y)):
        bad = ~np.isfinite(arr)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            label = f"item {items[i]!r}" if items is not None else f"position {i}"
            raise InputError(
                f"{name} of {label} is {float(arr[i])} ({int(bad.sum())} non-finite {name} value(s) in all)"
            )
        if np.ptp(arr) == 0:
            raise InputError(f"every {name} is {float(arr[0]):g}: correlations are undefined for constant values")
    return x, y


# --------------------------------------------------------------------------- point estimates


def srcc(pred: np.ndarray, mos: np.ndarray) -> float:
    """Spearman rank correlation."""
    return float(stats.spearmanr(pred, mos).statistic)


def krcc(pred: np.ndarray, mos: np.ndarray) -> float:
    """Kendall's tau-b."""
    return float(stats.kendalltau(pred, mos).statistic)


def plcc(pred: np.ndarray, mos: np.ndarray) -> float:
    """Pearson correlation of the raw predictions."""
    return float(stats.pearsonr(pred, mos).statistic)


def rmse(pred: np.ndarray, mos: np.ndarray) -> float:
    """Root mean squared error (meaningful raw only when both are on one scale)."""
    d = np.asarray(pred, dtype=float) - np.asarray(mos, dtype=float)
    return float(np.sqrt(np.mean(d * d)))


def logistic4(x: np.ndarray, b1: float, b2: float, b3: float, b4: float) -> np.ndarray:
    """``(b1 - b2) / (1 + exp(-(x - b3) / |b4|)) + b2``."""
    z = np.clip(-(np.asarray(x, dtype=float) - b3) / max(abs(b4), 1e-12), -500, 500)
    return (b1 - b2) / (1.0 + np.exp(z)) + b2


def logistic_initial(pred: np.ndarray, mos: np.ndarray) -> tuple[float, float, float, float]:
    """VQEG starting point: b1 = max(MOS), b2 = min(MOS), b3 = mean(pred), b4 = std(pred) / 4."""
    return float(np.max(mos)), float(np.min(mos)), float(np.mean(pred)), float(np.std(pred) / 4 or 1.0)


def fit_logistic(pred: np.ndarray, mos: np.ndarray) -> LogisticFit:
    """Least-squares 4-parameter logistic, monotone in the direction of the SRCC and no steeper
    than :data:`MIN_SCALE_FRACTION` allows, or the linear fallback with its reason."""
    x, y = np.asarray(pred, dtype=float), np.asarray(mos, dtype=float)
    slope, intercept = np.polyfit(x, y, 1)
    linear = LogisticFit("linear", (float(slope), float(intercept)))
    if x.size < 5:
        return replace(linear, note=f"only {x.size} items, too few for the 4-parameter logistic")
    rho = srcc(x, y)
    if not np.isfinite(rho) or rho == 0:
        return replace(linear, note="the rank correlation is zero, so the logistic has no direction to follow")
    direction = 1.0 if rho > 0 else -1.0
    # Fitted on u = direction * x, where the curve must rise: y = low + height * s((u - centre) / scale).
    u = direction * x
    span = float(np.ptp(u))
    min_scale = MIN_SCALE_FRACTION * span
    p0 = (float(np.min(y)), float(np.ptp(y)), float(np.mean(u)), max(float(np.std(u)) / 4, min_scale))
    lower = (-np.inf, 0.0, float(u.min()) - span, min_scale)
    upper = (np.inf, np.inf, float(u.max()) + span, np.inf)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            (low, height, centre, scale), _ = curve_fit(_rising, u, y, p0=p0, bounds=(lower, upper), max_nfev=20000)
    except (RuntimeError, ValueError):
        return replace(linear, note="the logistic fit did not converge")
    if not height > 1e-9 * float(np.ptp(y)):
        return replace(linear, note="the logistic in the direction of the rank correlation is flat")
    # Back to b1..b4 on x: a falling curve has b1 < b2 and its centre mirrored.
    if direction > 0:
        params = (low + height, low, centre, scale)
    else:
        params = (low, low + height, -centre, scale)
    if scale <= min_scale * (1 + 1e-6):
        # The best curve presses against the steepness bound: a step between two groups of
        # predictions, whose PLCC says how the groups differ, not how well the scores rank.
        return replace(linear, note="the logistic fit is a step (its scale at the bound set by the predictions' range)")
    fit = LogisticFit("logistic", tuple(float(p) for p in params))
    fitted = fit.predict(x)
    if not np.all(np.isfinite(fitted)):
        return replace(linear, note="the logistic fit is not finite")
    if _sse(fitted, y) > _sse(linear.predict(x), y) * (1 + 1e-9):
        return replace(linear, note="the logistic fit does not beat a line")
    return fit


def _rising(u: np.ndarray, low: float, height: float, centre: float, scale: float) -> np.ndarray:
    z = np.clip(-(u - centre) / scale, -500, 500)
    return low + height / (1.0 + np.exp(z))


def fitted_plcc(fit: LogisticFit, x: np.ndarray, y: np.ndarray) -> float:
    """PLCC after the fit, signed by the fit's direction: the correlation of the order-keeping
    transform of the predictions with the MOS (so a falling fit gives a negative value)."""
    fitted = fit.predict(x)
    if np.ptp(fitted) == 0:
        return float("nan")
    r = float(np.corrcoef(fitted, y)[0, 1])
    return r if fit.increasing else -r


def _sse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sum((a - b) ** 2))


def fisher_z_ci(r: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Confidence interval of a Pearson correlation by Fisher's z (NaN when n <= 3)."""
    if n <= 3 or not np.isfinite(r):
        return float("nan"), float("nan")
    z = np.arctanh(np.clip(r, -0.999999999, 0.999999999))
    half = stats.norm.ppf(0.5 + confidence / 2) / np.sqrt(n - 3)
    return float(np.tanh(z - half)), float(np.tanh(z + half))


def fisher_z_test(r_a: float, r_b: float, n_a: int, n_b: int) -> tuple[float, float]:
    """ITU-T P.1401 test of two Pearson correlations: ``(z, two-sided p)``.

    P.1401 treats the two correlations as independent; for two models on the same items this
    is conservative (the paired bootstrap is the sharper test).
    """
    if min(n_a, n_b) <= 3:
        return float("nan"), float("nan")
    za, zb = (np.arctanh(np.clip(r, -0.999999999, 0.999999999)) for r in (r_a, r_b))
    z = float((zb - za) / np.sqrt(1.0 / (n_a - 3) + 1.0 / (n_b - 3)))
    return z, float(2 * stats.norm.sf(abs(z)))


# --------------------------------------------------------------------------- vectorised bootstrap


def bootstrap_indices(n: int, n_boot: int = DEFAULT_BOOT, seed: int = 0) -> np.ndarray:
    """(n_boot, n) item indices drawn with replacement by ``numpy.random.default_rng(seed)``."""
    if n_boot < 1:
        raise InputError(f"the number of bootstrap draws must be positive, got {n_boot}")
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def pearson_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row pair of two (draws, n) matrices (NaN for constant rows)."""
    xc = x - x.mean(axis=1, keepdims=True)
    yc = y - y.mean(axis=1, keepdims=True)
    den = np.sqrt((xc * xc).sum(axis=1) * (yc * yc).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (xc * yc).sum(axis=1) / den
    return np.where(den > 0, r, np.nan)


def spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman correlation per row: Pearson of the average ranks (ties as in scipy)."""
    return pearson_rows(stats.rankdata(x, axis=1), stats.rankdata(y, axis=1))


def kendall_draws(x: np.ndarray, y: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Kendall's tau-b of every resample ``(x[idx[b]], y[idx[b]])``.

    A resample is the original items with multiplicities ``w``; its concordant-minus-discordant
    count is ``w S w / 2`` with ``S_ij = sign(x_i - x_j) sign(y_i - y_j)``, and its pairs not
    tied in x are ``w |sign(x_i - x_j)| w / 2`` (copies of one item are tied). That makes
    tau-b three matrix products for all draws at once, exactly scipy's value. Above a few
    thousand items the n x n matrices get large and scipy is called per draw instead.
    """
    n = x.size
    if n > _KENDALL_MATRIX_MAX_N:
        return np.array([stats.kendalltau(x[row], y[row]).statistic for row in idx], dtype=float)
    sx = np.sign(x[:, None] - x[None, :]).astype(np.float32)
    sy = np.sign(y[:, None] - y[None, :]).astype(np.float32)
    out = np.empty(len(idx))
    step = max(1, _DRAW_CHUNK_CELLS // max(n, 1))
    for start in range(0, len(idx), step):
        rows = idx[start : start + step]
        w = np.zeros((len(rows), n), dtype=np.float32)
        np.add.at(w, (np.repeat(np.arange(len(rows)), n), rows.ravel()), 1.0)
        num = ((w @ (sx * sy)) * w).sum(axis=1, dtype=np.float64)
        dx = ((w @ np.abs(sx)) * w).sum(axis=1, dtype=np.float64)
        dy = ((w @ np.abs(sy)) * w).sum(axis=1, dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[start : start + len(rows)] = np.where((dx > 0) & (dy > 0), num / np.sqrt(dx * dy), np.nan)
    return out


def _projected_fit(
    x: np.ndarray, y: np.ndarray, centre: np.ndarray, log_scale: np.ndarray, rising: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For each row, the logistic with the given centre and scale, and the best b1, b2 for it.

    With ``s = 1 / (1 + exp(-(x - b3) / |b4|))`` the curve is ``b2 + (b1 - b2) s``: linear in
    b1, b2, so those follow from a least-squares line of y on s. Returns s, the centred s, its
    sum of squares, the slope ``b1 - b2``, the fitted values and the squared error.
    """
    scale = np.exp(log_scale)[:, None]
    s = 1.0 / (1.0 + np.exp(np.clip(-(x - centre[:, None]) / scale, -500, 500)))
    sc = s - s.mean(axis=1, keepdims=True)
    yc = y - y.mean(axis=1, keepdims=True)
    ss = (sc * sc).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = np.where(ss > 0, (sc * yc).sum(axis=1) / ss, 0.0)
    if rising:  # the least-squares slope under b1 >= b2: a falling optimum becomes flat
        slope = np.maximum(slope, 0.0)
    fitted = y.mean(axis=1, keepdims=True) + slope[:, None] * sc
    return s, sc, ss, slope, fitted, ((y - fitted) ** 2).sum(axis=1)


def refit_logistic_rows(
    x: np.ndarray,
    y: np.ndarray,
    start: Sequence[float],
    iterations: int = 40,
    tol: float = 1e-8,
    min_scale: float = 0.0,
    rising: bool = False,
) -> np.ndarray:
    """Least-squares 4-parameter logistic for every row of (draws, n) data, batched.

    b1 and b2 enter linearly and are solved in closed form for any centre b3 and scale b4
    (variable projection), so only (b3, log |b4|) is searched, by Levenberg-Marquardt with
    Kaufman's Jacobian, all rows at once, starting from ``start`` (the fit on all items).
    Searching the log of the scale matters: when the data lie on the straight middle part of
    the curve the optimum drifts towards an infinite scale, which a search over b1..b4 follows
    for hundreds of small steps. A row stops when a step gains less than ``tol`` of its
    squared error, or when no step helps even with heavy damping.
    ``min_scale`` bounds ``|b4|`` from below and ``rising`` keeps ``b1 >= b2`` (the guard rails
    of :func:`fit_logistic`, on data already turned to rise).
    Returns the fitted curve's values, shape (draws, n).
    """
    draws = x.shape[0]
    floor = float(np.log(min_scale)) if min_scale > 0 else -np.inf
    centre = np.full(draws, float(start[2]))
    log_scale = np.full(draws, max(float(np.log(max(abs(start[3]), 1e-12))), floor))
    s, sc, ss, slope, fitted, sse = _projected_fit(x, y, centre, log_scale, rising)
    lam = np.full(draws, 1e-3)
    active = np.arange(draws)
    for _ in range(iterations):
        if active.size == 0:
            break
        xa, ya = x[active], y[active]
        sa, sca, ssa, ka = s[active], sc[active], ss[active], slope[active]
        scale = np.exp(log_scale[active])[:, None]
        ds = sa * (1.0 - sa)
        # Residual derivatives by the centre and the log-scale (Kaufman: projected off span{1, s}).
        cols = []
        for d in (-ds / scale, -ds * (xa - centre[active, None]) / scale):
            dc = d - d.mean(axis=1, keepdims=True)
            with np.errstate(invalid="ignore", divide="ignore"):
                proj = np.where(ssa > 0, (dc * sca).sum(axis=1) / ssa, 0.0)
            cols.append(-ka[:, None] * (dc - proj[:, None] * sca))
        resid = ya - fitted[active]
        a11, a22 = (cols[0] ** 2).sum(axis=1), (cols[1] ** 2).sum(axis=1)
        a12 = (cols[0] * cols[1]).sum(axis=1)
        g1, g2 = (cols[0] * resid).sum(axis=1), (cols[1] * resid).sum(axis=1)
        lam_a = lam[active]
        d11, d22 = a11 * (1 + lam_a) + 1e-12, a22 * (1 + lam_a) + 1e-12
        det = d11 * d22 - a12 * a12
        with np.errstate(invalid="ignore", divide="ignore"):
            step_c = np.nan_to_num(-(d22 * g1 - a12 * g2) / det)
            step_t = np.clip(np.nan_to_num(-(d11 * g2 - a12 * g1) / det), -2.0, 2.0)
        new_c, new_t = centre[active] + step_c, np.maximum(log_scale[active] + step_t, floor)
        s_n, sc_n, ss_n, k_n, f_n, sse_n = _projected_fit(xa, ya, new_c, new_t, rising)
        old = sse[active]
        better = np.isfinite(sse_n) & (sse_n < old)
        take = active[better]
        centre[take], log_scale[take] = new_c[better], new_t[better]
        s[take], sc[take], ss[take], slope[take] = s_n[better], sc_n[better], ss_n[better], k_n[better]
        fitted[take], sse[take] = f_n[better], sse_n[better]
        lam[active] = np.clip(np.where(better, lam_a / 3.0, lam_a * 4.0), 1e-12, 1e12)
        # A small gain only means convergence when the step was barely damped; a heavily
        # damped step is small whether or not the minimum is near.
        done = np.where(better, (old - sse_n <= tol * old) & (lam_a <= 1e-2), lam[active] >= 1e10)
        active = active[~done]
    return fitted


def _linear_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    xc = x - x.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = (xc * (y - y.mean(axis=1, keepdims=True))).sum(axis=1) / (xc * xc).sum(axis=1)
    slope = np.nan_to_num(slope)
    return y.mean(axis=1, keepdims=True) + slope[:, None] * xc


def bootstrap_draws(
    x: np.ndarray, y: np.ndarray, idx: np.ndarray, fit: LogisticFit, names: Iterable[str] = METRIC_NAMES
) -> dict[str, np.ndarray]:
    """Every requested coefficient on every resample ``idx`` (draws, n): name -> (draws,)."""
    names = list(names)
    out: dict[str, list[np.ndarray]] = {name: [] for name in names}
    step = max(1, _DRAW_CHUNK_CELLS // max(x.size, 1))
    for start in range(0, len(idx), step):
        rows = idx[start : start + step]
        xb, yb = x[rows], y[rows]
        if "srcc" in out:
            out["srcc"].append(spearman_rows(xb, yb))
        if "plcc" in out:
            out["plcc"].append(pearson_rows(xb, yb))
        if "rmse" in out:
            out["rmse"].append(np.sqrt(((xb - yb) ** 2).mean(axis=1)))
        if "plcc_logistic" in out or "rmse_logistic" in out:
            if fit.kind == "logistic":
                # Refit on the rising side (u = direction * x) under the same guard rails; the
                # signed fitted PLCC is then direction * corr(fitted, y).
                sign = 1.0 if fit.increasing else -1.0
                rising_start = (fit.params[0], fit.params[1], sign * fit.params[2], fit.params[3])
                min_scale = MIN_SCALE_FRACTION * float(np.ptp(x))
                fitted = refit_logistic_rows(sign * xb, yb, rising_start, min_scale=min_scale, rising=True)
                # A resample that falls where the whole set rises gets the flat curve: no
                # association in the model's direction (0), not an undefined draw left out.
                flat = (np.ptp(fitted, axis=1) == 0) & (np.ptp(xb, axis=1) > 0)
                signed = np.where(flat, 0.0, sign * pearson_rows(fitted, yb))
            else:
                fitted = _linear_rows(xb, yb)
                signed = pearson_rows(xb, yb)  # the line keeps or reverses the order with its slope
            if "plcc_logistic" in out:
                out["plcc_logistic"].append(signed)
            if "rmse_logistic" in out:
                out["rmse_logistic"].append(np.sqrt(((fitted - yb) ** 2).mean(axis=1)))
    result = {name: np.concatenate(parts) for name, parts in out.items() if parts}
    if "krcc" in names:
        result["krcc"] = kendall_draws(x, y, idx)
    return result


def _point(x: np.ndarray, y: np.ndarray, fit: LogisticFit) -> dict[str, float]:
    fitted = fit.predict(x)
    return {
        "srcc": srcc(x, y),
        "krcc": krcc(x, y),
        "plcc": plcc(x, y),
        "rmse": rmse(x, y),
        "plcc_logistic": fitted_plcc(fit, x, y),
        "rmse_logistic": rmse(fitted, y),
    }


def _interval(draws: np.ndarray, confidence: float) -> tuple[float, float]:
    finite = draws[np.isfinite(draws)]
    if finite.size == 0:
        return float("nan"), float("nan")
    tail = (1 - confidence) / 2 * 100
    lo, hi = np.percentile(finite, [tail, 100 - tail])
    return float(lo), float(hi)


# --------------------------------------------------------------------------- public API


def agreement(
    pred: Sequence[float] | np.ndarray,
    mos: Sequence[float] | np.ndarray,
    *,
    n_boot: int = DEFAULT_BOOT,
    seed: int = 0,
    confidence: float = 0.95,
    items: Sequence[str] | None = None,
) -> AgreementReport:
    """SRCC, KRCC, PLCC/RMSE raw and after the logistic fit, each with a bootstrap interval,
    plus the Fisher-z interval of the raw PLCC."""
    if not 0 < confidence < 1:
        raise InputError(f"confidence must be in (0, 1), got {confidence}")
    x, y = check_pair(pred, mos, items)
    fit = fit_logistic(x, y)
    point = _point(x, y, fit)
    draws = bootstrap_draws(x, y, bootstrap_indices(x.size, n_boot, seed), fit)
    metrics = {name: MetricResult(name, point[name], *_interval(draws[name], confidence)) for name in METRIC_NAMES}
    notes = []
    if fit.kind == "linear":
        notes.append(f"*_logistic use a linear fit: {fit.note}")
    magnitude = float(np.max(np.abs(x)))
    if np.ptp(x) <= NEAR_CONSTANT_SPREAD * magnitude:
        notes.append(
            f"predictions are nearly constant: all {x.size} lie within {np.ptp(x):.3g} of each other "
            f"({np.ptp(x) / magnitude:.1%} of their magnitude); the correlations rest on tiny differences"
        )
    unusable = sum(int((~np.isfinite(d)).sum()) for d in draws.values())
    if unusable:
        notes.append(f"{unusable} bootstrap value(s) undefined (constant resample) and left out of the intervals")
    fisher = MetricResult("plcc", point["plcc"], *fisher_z_ci(point["plcc"], x.size, confidence), method="fisher-z")
    return AgreementReport(x.size, metrics, fit, fisher, n_boot, seed, confidence, notes)


def paired_bootstrap(
    pred_a: Sequence[float] | np.ndarray,
    pred_b: Sequence[float] | np.ndarray,
    mos: Sequence[float] | np.ndarray,
    *,
    n_boot: int = DEFAULT_BOOT,
    seed: int = 0,
    confidence: float = 0.95,
    names: Iterable[str] = METRIC_NAMES,
    items: Sequence[str] | None = None,
) -> dict[str, PairedDifference]:
    """Difference ``b - a`` of each coefficient, on the same resamples of the items for both."""
    xa, y = check_pair(pred_a, mos, items)
    xb, _ = check_pair(pred_b, mos, items)
    names = list(names)
    idx = bootstrap_indices(y.size, n_boot, seed)
    fit_a, fit_b = fit_logistic(xa, y), fit_logistic(xb, y)
    point_a, point_b = _point(xa, y, fit_a), _point(xb, y, fit_b)
    draws_a = bootstrap_draws(xa, y, idx, fit_a, names)
    draws_b = bootstrap_draws(xb, y, idx, fit_b, names)
    out = {}
    for name in names:
        d = draws_b[name] - draws_a[name]
        finite = d[np.isfinite(d)]
        p = float(min(1.0, 2 * min((finite <= 0).mean(), (finite >= 0).mean()))) if finite.size else float("nan")
        out[name] = PairedDifference(
            name, point_a[name], point_b[name], point_b[name] - point_a[name], *_interval(d, confidence), p
        )
    return out
