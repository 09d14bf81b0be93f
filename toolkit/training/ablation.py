"""The paper's ablation on the user's data: levels vs soft labels vs direct scores.

Three runs with one budget (same base model, data, recipe, steps, batch size, learning rate
and seed) that differ only in the training target:

``ce``     the Q-Align level words ("The quality of the image is good."), cross-entropy;
``soft``   the same answers, with the level word's five-way distribution fitted to the votes (KL);
``score``  the score written as text ("The quality of the image is 3.42."), cross-entropy.

Each trained model then scores the same held-out items: level models by the expected level of
the scoring prompt, the score model by the number it writes (greedy decoding). Items where the
score model writes no number get the middle of the scale (3.0) so that every set covers the same
items, as the paired comparisons need, and are counted in the notes. Model selection on the test
set would flatter every arm, so no held-out evaluation happens during these runs.

:func:`run_ablation` returns the predictions; ``qalign ablate`` turns them into a report with
``toolkit.evaluation.write_report`` (paired bootstrap of each arm against the level model).
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from toolkit.errors import InputError, ToolkitError
from toolkit.files import atomic_write_text
from toolkit.io import csv_text
from toolkit.models.base import QAlignBackbone
from toolkit.qalign import expected_score
from toolkit.training.config import LOSS_NAMES, TrainConfig
from toolkit.training.data import TrainingData, load_training_data
from toolkit.training.loop import train
from toolkit.training.predict import Method, predict_scores

SET_NAMES = {"ce": "levels (ce)", "soft": "soft labels (soft)", "score": "direct score (score)"}
MIDPOINT = 3.0  # stands in for a direct-score answer without a number
RUNS_DIR = "runs"
PREDICTIONS_CSV = "predictions.csv"
SUMMARY_JSON = "ablation.json"
_MARKER = SUMMARY_JSON


@dataclass
class ArmResult:
    loss: str
    name: str
    output_dir: Path
    steps: int
    seconds: float
    final_loss: float
    failed: int  # test items without a prediction (imputed with MIDPOINT)
    texts: list[str] = field(default_factory=list)  # generated answers of the score model


@dataclass
class AblationResult:
    out_dir: Path
    items: list[str]
    mos: np.ndarray
    predictions: dict[str, np.ndarray]  # set name -> one score per item (same order as ``items``), arms that rank
    # the items at all; predictions.csv has every arm
    arms: list[ArmResult]
    notes: list[str]

    def to_dict(self) -> dict[str, object]:
        return {
            "items": len(self.items),
            "arms": [
                {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(a).items() if k != "texts"}
                for a in self.arms
            ],
            "notes": self.notes,
        }


def run_ablation(
    base: TrainConfig,
    test: str | os.PathLike[str],
    out: str | os.PathLike[str],
    test_images: str | os.PathLike[str] | None = None,
    losses: Sequence[str] = LOSS_NAMES,
    batch_size: int = 16,
    log: Callable[[str], None] | None = None,
) -> AblationResult:
    """Train one model per loss in ``losses`` with ``base``'s settings and score ``test``.

    ``base.out`` is ignored: run ``X`` goes to ``out/runs/X``. The predictions, with the MOS, go
    to ``out/predictions.csv``; a summary to ``out/ablation.json``.
    """
    say = log or (lambda _: None)
    losses = list(dict.fromkeys(losses))
    unknown = [name for name in losses if name not in LOSS_NAMES]
    if unknown or len(losses) < 2:
        raise InputError(f"losses must be two or more of {', '.join(LOSS_NAMES)}, got {list(losses)}")
    out_dir = _check_out(Path(out))
    if test_images is None and isinstance(base.images, str):
        test_images = base.images  # one media folder for training and test data
    data = load_training_data(test, test_images, base.split, base.max_frames)
    mos = _mos(data)
    items = [r.id for r in data.records]

    predictions: dict[str, np.ndarray] = {}
    arms: list[ArmResult] = []
    for name in losses:
        # from_dict, not dataclasses.replace: every setting of ``base`` stays explicit, so a recipe
        # cannot take back a value that happens to equal a field's default.
        config = TrainConfig.from_dict(
            {
                **base.to_dict(),
                "loss": name,
                "out": str(out_dir / RUNS_DIR / name),
                "eval_data": None,
                "save_every": 0,
                "resume": False,
            }
        )
        say(f"training with loss {name} ({SET_NAMES[name]})...")
        start = time.perf_counter()
        trained = train(config)
        if trained.backbone is None:  # train() always returns the model it trained
            raise ToolkitError(f"the {name} run returned no model to score with")
        method: Method = "generate" if name == "score" else "levels"
        scores, texts = _score(trained.backbone, data, method, batch_size)
        failed = int((~np.isfinite(scores)).sum())
        predictions[SET_NAMES[name]] = np.where(np.isfinite(scores), scores, MIDPOINT)
        arms.append(
            ArmResult(
                name,
                SET_NAMES[name],
                Path(config.out),
                trained.steps,
                time.perf_counter() - start,
                trained.final_loss,
                failed,
                texts,
            )
        )
        say(
            f"  {name}: {trained.steps} steps, final loss {trained.final_loss:.4f}, "
            f"{len(items) - failed}/{len(items)} items scored"
        )
        del trained
        gc.collect()  # one trained model in memory at a time

    notes = [
        f"Same budget for every arm: base model {base.model}, "
        f"{arms[0].steps} steps of {base.batch_size} examples, "
        f"mode {base.mode}, lr {base.learning_rate:g}, seed {base.seed}"
        + (f", recipe {base.recipe}" if base.recipe else "")
        + ".",
        "Level models are scored by the expected level of the scoring prompt; the direct-score model by the "
        "first number of its greedy answer.",
    ]
    for arm in arms:
        if arm.failed:
            notes.append(f"{arm.name}: {arm.failed} of {len(items)} answers held no number; they count as {MIDPOINT}.")
    result = AblationResult(out_dir, items, mos, predictions, arms, notes)
    _write(result, base)  # every arm, also those left out of the comparison below
    for name, pred in list(predictions.items()):
        if np.ptp(pred) == 0:
            # A model that gives every item the same score ranks nothing; correlations with it
            # are undefined, so it cannot enter the paired comparison.
            del predictions[name]
            notes.append(
                f"{name}: every item got {pred[0]:g}; a constant prediction has no correlation with the MOS, "
                "so this arm is left out of the comparison (train longer, or with a larger model)."
            )
    if not predictions:
        raise InputError("every arm gave all test items the same score; nothing to compare (train longer)")
    return result


def _check_out(out: Path) -> Path:
    if out.exists() and any(out.iterdir()) and not (out / _MARKER).is_file() and not (out / RUNS_DIR).is_dir():
        raise InputError(f"output folder {out} is not empty and holds no earlier ablation; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _mos(data: TrainingData) -> np.ndarray:
    values: list[float] = []
    missing: list[str] = []
    for r in data.records:
        if r.gt_score is not None:
            values.append(r.gt_score)
        elif r.level_probs is not None:
            values.append(float(expected_score(r.level_probs)))
        else:
            missing.append(r.id)
    if missing:
        raise InputError(
            f"{data.source}: {len(missing)} test record(s) have no gt_score or level_probs "
            f"to compare with (first: {missing[0]!r})"
        )
    return np.asarray(values, dtype=float)


def _score(
    backbone: QAlignBackbone, data: TrainingData, method: Method, batch_size: int
) -> tuple[np.ndarray, list[str]]:
    """Scores of every test item; frames are loaded one chunk at a time."""
    scores: list[float] = []
    texts: list[str] = []
    tasks = data.tasks()
    for start in range(0, len(data), batch_size):
        idx = range(start, min(start + batch_size, len(data)))
        examples = [data[i] for i in idx]
        pred = predict_scores(
            backbone,
            [e.frames for e in examples],
            [tasks[i] for i in idx],
            [e.kind for e in examples],
            method=method,
            batch_size=batch_size,
        )
        scores.extend(pred.scores.tolist())
        texts.extend(pred.texts)
    return np.asarray(scores, dtype=float), texts


def _write(result: AblationResult, base: TrainConfig) -> None:
    import pandas as pd

    score_arm = next((a for a in result.arms if a.loss == "score"), None)
    columns: dict[str, object] = {"item": list(result.items), "mos": np.asarray(result.mos, dtype=float)}
    columns.update({name: np.asarray(p, dtype=float) for name, p in result.predictions.items()})
    if score_arm:
        columns["score_answer"] = list(score_arm.texts)
    # Through csv_text: item paths and the score model's free-text answers are text a
    # spreadsheet would otherwise run as formulas; numbers stay numbers (a negative one is not text).
    text = csv_text(pd.DataFrame(columns), float_format="%.6g")
    atomic_write_text(result.out_dir / PREDICTIONS_CSV, text)
    summary = {"config": base.to_dict(), **result.to_dict()}
    atomic_write_text(result.out_dir / SUMMARY_JSON, json.dumps(summary, indent=1, default=str) + "\n")
