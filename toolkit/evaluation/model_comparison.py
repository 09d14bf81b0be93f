"""Evaluating models (and adapters) on test sets: score each, compare with the MOS, report.

>>> from toolkit.evaluation import ModelSpec, evaluate_models                 # doctest: +SKIP
>>> report = evaluate_models(                                                 # doctest: +SKIP
...     [ModelSpec("q-future/one-align", name="base"),
...      ModelSpec("q-future/one-align", "runs/lora", name="lora")],
...     ["koniq_test.json", "my_study_test.csv"], "report/", votes="votes.csv")

Every model is loaded once and scores every test set before the next model is loaded (so only
one model is in memory at a time). The score tables are kept in the report folder
(``scores/<test set>/<model>.csv``), the same CSV ``qalign score`` writes. On each test set, the
items every model scored are compared with the MOS (:func:`~toolkit.evaluation.evaluate_sets`:
bootstrap intervals, each later model against the first by a paired bootstrap), the predicted
level distributions with the observed ones (:mod:`~toolkit.evaluation.calibration`), and, when
raw votes exist, the raters' split-half agreement gives the noise ceiling.
"""

from __future__ import annotations

import gc
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from toolkit.errors import InputError
from toolkit.evaluation.calibration import DEFAULT_BINS, CalibrationResult, calibration, onehot_levels
from toolkit.evaluation.metrics import DEFAULT_BOOT, AgreementReport, MetricResult
from toolkit.evaluation.report import METRIC_DEFINITIONS, Comparison, evaluate_sets
from toolkit.evaluation.testsets import HISTOGRAM_SOURCE, ONEHOT_SOURCE, TestSet, TestVotes, load_test_set, match_votes
from toolkit.qalign import PROB_COLUMNS, Task

if TYPE_CHECKING:
    from toolkit.scoring import Scorer

NO_ADAPTER = frozenset({"", "none", "-"})


@dataclass(frozen=True)
class ModelSpec:
    """A model folder, hub id or ``"tiny"``, an optional LoRA adapter, and the name shown in reports."""

    model: str
    adapter: str | None = None
    name: str = ""

    @property
    def label(self) -> str:
        return self.name or default_name(self.model, self.adapter)


def default_name(model: str, adapter: str | None) -> str:
    base = _folder_name(model)
    return base if adapter is None else f"{base}+{_folder_name(adapter)}"


def _folder_name(path: str) -> str:
    text = str(path).rstrip("/\\")
    return Path(text).name or text


def model_specs(
    models: Sequence[str], adapters: Sequence[str | None] = (), names: Sequence[str] = ()
) -> list[ModelSpec]:
    """Models paired with adapters by position.

    Without adapters every model is used as it is. With as many adapters as models, the k-th
    adapter goes on the k-th model (``none`` for no adapter). With one model and several
    adapters, each adapter goes on that model (``--adapter none`` adds the bare model).
    Names default to the folder names (``model+adapter``); clashes get a ``-2``, ``-3`` suffix.
    """
    models = list(models)
    if not models:
        raise InputError("no models given")
    cleaned = [None if a is None or str(a).strip().lower() in NO_ADAPTER else str(a) for a in adapters]
    pairs: list[tuple[str, str | None]]
    if not cleaned:
        pairs = [(m, None) for m in models]
    elif len(cleaned) == len(models):
        pairs = list(zip(models, cleaned))
    elif len(models) == 1:
        pairs = [(models[0], a) for a in cleaned]
    else:
        raise InputError(
            f"{len(cleaned)} adapter(s) for {len(models)} model(s): give one adapter per model (none for no adapter),"
            " or one model with several adapters"
        )
    if names and len(names) != len(pairs):
        raise InputError(f"{len(names)} name(s) for {len(pairs)} model(s)")
    labels = list(names) if names else [default_name(m, a) for m, a in pairs]
    if names and len(set(labels)) != len(labels):
        raise InputError(f"model names must differ, got {labels}")
    return [ModelSpec(m, a, n) for (m, a), n in zip(pairs, _distinct(labels))]


def _distinct(labels: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label}-{seen[label]}")
    return out


def slug(name: str) -> str:
    """A file-name-safe form of a model or test-set name."""
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", name).strip("._") or "set"


# --------------------------------------------------------------------------- scoring


ScorerLoader = Callable[[ModelSpec], "Scorer"]


def score_test_sets(
    specs: Sequence[ModelSpec],
    tests: Sequence[TestSet],
    *,
    load: ScorerLoader,
    task: Task = "quality",
    out_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> dict[str, dict[str, pd.DataFrame]]:
    """Score tables by test set and model name; each model is loaded once, then released.

    With ``out_dir`` the tables are also written to ``out_dir/scores/<test>/<model>.csv``.
    """
    from toolkit.scoring.results import write_results

    scores: dict[str, dict[str, pd.DataFrame]] = {t.name: {} for t in tests}
    for spec in specs:
        scorer = load(spec)
        try:
            for test in tests:
                frame = scorer.score(test.files, task=task, video=test.video, progress=progress)
                scores[test.name][spec.label] = frame
                if out_dir is not None:
                    write_results(frame, Path(out_dir) / "scores" / slug(test.name) / f"{slug(spec.label)}.csv")
        finally:
            _release(scorer)
    return scores


def _release(scorer: Scorer) -> None:
    """Drop the model before the next one loads (GPU memory is not returned by ``del`` alone)."""
    device = getattr(getattr(scorer.backbone, "model", None), "device", None)
    del scorer
    gc.collect()
    if device is not None and getattr(device, "type", "") == "cuda":
        import torch

        torch.cuda.empty_cache()


# --------------------------------------------------------------------------- analysis


@dataclass
class TestSetResult:
    """Everything measured on one test set."""

    name: str
    source: str
    n_items: int  # in the test file
    items: list[str]  # evaluated: scored by every model
    mos: np.ndarray
    predictions: dict[str, np.ndarray]
    probabilities: dict[str, np.ndarray]  # (items, 5), LEVELS order
    results: dict[str, AgreementReport]
    comparisons: list[Comparison]
    calibration: dict[str, CalibrationResult]
    noise_ceiling: MetricResult | None = None
    noise_ceiling_plcc: MetricResult | None = None
    votes: dict[str, int] | None = None  # n_votes, n_raters, n_items of the matched votes
    plots: dict[str, Path] = field(default_factory=dict)  # model name or "reliability" -> PNG
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {
            "source": self.source,
            "n_items": self.n_items,
            "n_evaluated": len(self.items),
            "sets": {k: v.to_dict() for k, v in self.results.items()},
            "comparisons": [c.to_dict() for c in self.comparisons],
            "noise_ceiling": None if self.noise_ceiling is None else self.noise_ceiling.to_dict(),
            "noise_ceiling_plcc": None if self.noise_ceiling_plcc is None else self.noise_ceiling_plcc.to_dict(),
            "votes": self.votes,
            "calibration": {k: v.to_dict() for k, v in self.calibration.items()},
            "plots": {k: p.name for k, p in self.plots.items()},
            "notes": list(self.notes),
        }


def _usable(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows with a score and five finite probabilities and no error."""
    ok = np.isfinite(frame[["score", *PROB_COLUMNS]].to_numpy(dtype=float)).all(axis=1)
    if "error" in frame.columns:
        ok &= (frame["error"].astype("string").fillna("").str.strip() == "").to_numpy()
    return frame.loc[ok]


def evaluate_test_set(
    test: TestSet,
    scores: Mapping[str, pd.DataFrame],
    *,
    votes: TestVotes | None = None,
    n_boot: int = DEFAULT_BOOT,
    seed: int = 0,
    confidence: float = 0.95,
    n_bins: int = DEFAULT_BINS,
) -> TestSetResult:
    """Agreement, paired comparisons and calibration of score tables (``path`` = the test set's
    ``files``) on the items every table scored."""
    if not scores:
        raise InputError("no score tables given")
    position = pd.Series(np.arange(len(test)), index=test.files)
    notes = list(test.notes)
    rows: dict[str, pd.DataFrame] = {}
    common: np.ndarray | None = None
    for name, frame in scores.items():
        good = _usable(frame)
        pos = good["path"].astype(str).map(position)
        unknown = int(pos.isna().sum())
        if unknown:
            raise InputError(f"{name}: {unknown} scored path(s) are not in test set {test.name!r}")
        failed = len(test) - len(good)
        if failed:
            notes.append(f"{name}: {failed} item(s) could not be scored and are left out")
        rows[name] = good.set_index(pos.astype(int).to_numpy())
        idx = rows[name].index.to_numpy()
        common = idx if common is None else np.intersect1d(common, idx)
    assert common is not None
    common = np.sort(common)
    if common.size < 3:
        raise InputError(f"test set {test.name!r}: only {common.size} item(s) were scored by every model; need 3")
    left_out = max(len(r) for r in rows.values()) - common.size
    if left_out:
        notes.append(f"{left_out} item(s) not scored by every model are left out")
    items = [test.items[i] for i in common]
    mos = test.mos[common]
    predictions = {name: r.loc[common, "score"].to_numpy(dtype=float) for name, r in rows.items()}
    probabilities = {name: r.loc[common, list(PROB_COLUMNS)].to_numpy(dtype=float) for name, r in rows.items()}
    results, comparisons = evaluate_sets(predictions, mos, items=items, n_boot=n_boot, seed=seed, confidence=confidence)
    for name, res in results.items():
        notes.extend(f"{name}: {note}" for note in res.notes)

    observed, observed_from, keep = _observed(test, votes, common)
    if keep.sum() < len(common):
        notes.append(f"calibration on the {int(keep.sum())} evaluated item(s) with votes")
    cal = {}
    if keep.any():
        for name, probs in probabilities.items():
            p = probs[keep] / probs[keep].sum(axis=1, keepdims=True)
            # Level bins: the table's MOS level for one-hot observations; with votes, the level
            # nearest to the vote mean (on the vote scale, whatever scale the MOS is on).
            levels = test.levels[common][keep] if observed_from == ONEHOT_SOURCE else None
            cal[name] = calibration(p, observed[keep], levels=levels, n_bins=n_bins, observed_from=observed_from)
    result = TestSetResult(
        name=test.name,
        source=test.source,
        n_items=len(test),
        items=items,
        mos=mos,
        predictions=predictions,
        probabilities=probabilities,
        results=results,
        comparisons=comparisons,
        calibration=cal,
        notes=notes,
    )
    if votes is not None:
        result.noise_ceiling, result.noise_ceiling_plcc = votes.ceiling, votes.ceiling_plcc
        result.votes = {"n_votes": votes.n_votes, "n_raters": votes.n_raters, "n_items": votes.n_items}
        notes.extend(votes.notes)
    return result


def _observed(test: TestSet, votes: TestVotes | None, common: np.ndarray) -> tuple[np.ndarray, str, np.ndarray]:
    """Observed level distributions of the evaluated items, where they come from, which items have one."""
    if votes is not None and votes.n_items:
        hist = votes.histogram[common]
        keep = np.isfinite(hist).all(axis=1)
        return np.nan_to_num(hist), HISTOGRAM_SOURCE, keep
    if test.histogram is not None:
        return test.histogram[common], HISTOGRAM_SOURCE, np.ones(common.size, dtype=bool)
    return onehot_levels(test.levels[common]), ONEHOT_SOURCE, np.ones(common.size, dtype=bool)


# --------------------------------------------------------------------------- entry point


@dataclass
class ModelsReport:
    """What :func:`evaluate_models` measured and wrote."""

    out_dir: Path
    models: list[ModelSpec]
    tests: dict[str, TestSetResult]
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {
            "models": [{"name": m.label, "model": m.model, "adapter": m.adapter} for m in self.models],
            "reference": self.models[0].label if self.models else None,
            "test_sets": {k: v.to_dict() for k, v in self.tests.items()},
            "notes": list(self.notes),
            "metric_definitions": {
                **METRIC_DEFINITIONS,
                "noise_ceiling": "inter-rater split-half correlation of the MOS, Spearman-Brown corrected",
                "mean_kl": "mean over items of KL(observed level distribution || predicted), nats",
                "ece": "classwise expected calibration error over the five levels (equal-width bins)",
            },
        }


def _load_tests(
    tests: Sequence[TestSet | str | os.PathLike[str]],
    images: str | os.PathLike[str] | None,
    video: bool,
    *,
    columns: Mapping[str, object] | None,
    low: float | None,
    high: float | None,
    dmos: bool,
) -> list[TestSet]:
    loaded = [
        t
        if isinstance(t, TestSet)
        else load_test_set(t, images=images, video=video, columns=columns, low=low, high=high, dmos=dmos)
        for t in tests
    ]
    if not loaded:
        raise InputError("no test sets given")
    names = _distinct([t.name for t in loaded])
    for t, n in zip(loaded, names):
        t.name = n
    return loaded


def default_loader(
    *,
    device: str = "auto",
    dtype: str = "float32",
    batch_size: int = 8,
    num_workers: int = 0,
    max_frames: int | None = None,
    progress: bool = True,
) -> ScorerLoader:
    """Loads each :class:`ModelSpec` with :meth:`Scorer.from_pretrained`."""

    def load(spec: ModelSpec) -> Scorer:
        from toolkit.scoring import Scorer

        return Scorer.from_pretrained(
            spec.model,
            spec.adapter,
            dtype,
            device,
            batch_size=batch_size,
            num_workers=num_workers,
            max_frames=max_frames,
            progress=progress,
        )

    return load


def evaluate_models(
    models: Sequence[ModelSpec | str],
    tests: Sequence[TestSet | str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    images: str | os.PathLike[str] | None = None,
    votes: pd.DataFrame | str | os.PathLike[str] | None = None,
    video: bool = False,
    task: str = "quality",
    device: str = "auto",
    dtype: str = "float32",
    batch_size: int = 8,
    num_workers: int = 0,
    max_frames: int | None = None,
    n_boot: int = DEFAULT_BOOT,
    seed: int = 0,
    confidence: float = 0.95,
    n_bins: int = DEFAULT_BINS,
    n_splits: int = 200,
    columns: Mapping[str, object] | None = None,
    low: float | None = None,
    high: float | None = None,
    dmos: bool = False,
    title: str = "Model evaluation",
    progress: bool = True,
    plots: bool = True,
    load: ScorerLoader | None = None,
    overwrite: bool = False,
) -> ModelsReport:
    """Score every test set with every model and write one report folder.

    ``tests`` are files (see :func:`~toolkit.evaluation.testsets.load_test_set`) or loaded
    :class:`TestSet` objects; ``images`` is the media folder relative paths resolve against.
    ``votes`` (a long table: item, rater, vote) adds the noise ceiling and vote-histogram
    calibration for the test items it covers. The first model is the reference of the paired
    comparisons. ``load`` replaces the model loader (default :meth:`Scorer.from_pretrained`).
    ``out_dir`` follows every command's output-folder rule (:func:`toolkit.files.claim_output_dir`):
    a new or empty folder, or with ``overwrite`` an earlier toolkit output (whose score tables a
    rerun resumes from).
    """
    from toolkit.evaluation.comparison_report import write_models_report
    from toolkit.files import claim_output_dir, prepare_output_dir
    from toolkit.scoring import check_task

    task_name = check_task(task)
    specs = [m if isinstance(m, ModelSpec) else ModelSpec(str(m)) for m in models]
    if not specs:
        raise InputError("no models given")
    labels = [s.label for s in specs]
    if len(set(labels)) != len(labels):
        raise InputError(f"model names must differ, got {labels}")
    claim_output_dir(out_dir, overwrite=overwrite)
    test_sets = _load_tests(tests, images, video, columns=columns, low=low, high=high, dmos=dmos)
    vote_table = _read_votes(votes)
    matched = (
        {
            t.name: match_votes(vote_table, t.items, n_splits=n_splits, seed=seed, confidence=confidence)
            for t in test_sets
        }
        if vote_table is not None
        else {}
    )

    loader = load or default_loader(
        device=device,
        dtype=dtype,
        batch_size=batch_size,
        num_workers=num_workers,
        max_frames=max_frames,
        progress=progress,
    )
    # The score tables land in the folder while scoring, so it is made (and marked) first; from
    # then on it is this call's own output, which the report below writes into.
    prepare_output_dir(out_dir, overwrite=overwrite, written_by="toolkit.evaluation.evaluate_models")
    scores = score_test_sets(specs, test_sets, load=loader, task=task_name, out_dir=out_dir, progress=progress)
    results = {
        t.name: evaluate_test_set(
            t,
            scores[t.name],
            votes=matched.get(t.name),
            n_boot=n_boot,
            seed=seed,
            confidence=confidence,
            n_bins=n_bins,
        )
        for t in test_sets
    }
    report = ModelsReport(Path(out_dir), specs, results)
    return write_models_report(report, title=title, plots=plots, overwrite=True)


def _read_votes(votes: pd.DataFrame | str | os.PathLike[str] | None) -> pd.DataFrame | None:
    if votes is None or isinstance(votes, pd.DataFrame):
        return votes
    from toolkit.io import read_table

    return read_table(votes)
