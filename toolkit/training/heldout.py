"""Held-out evaluation during training: answer loss and how well predicted scores rank the items.

This is a quick health check for the training log (loss on unseen conversations, Spearman and
Pearson correlation of the predicted score with the ground truth, and for records with vote
distributions the KL divergence to them); the full evaluation with confidence intervals lives
in ``toolkit.evaluation``.

Level models are scored under teacher forcing: the expected level at the position that predicts
the answer's level word, from the same forward pass as the loss. Direct-score models are scored
by the number they write after the scoring prompt (:mod:`toolkit.training.predict`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from toolkit.models.base import QAlignBackbone
from toolkit.qalign import IGNORE_INDEX, answer_task, expected_score, level_softmax
from toolkit.training.predict import Method, predict_scores

if TYPE_CHECKING:
    import torch


@dataclass
class HeldOutResult:
    step: int
    loss: float  # answer-token cross-entropy, mean over all answer tokens
    srcc: float | None  # Spearman of the predicted score vs gt_score (or the answer's level)
    n: int
    plcc: float | None = None  # Pearson of the same (raw, no logistic fit)
    kl: float | None = None  # mean KL(vote distribution || predicted level distribution), records with level_probs
    failed: int = 0  # items without a prediction (a direct-score model that wrote no number)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def metric(self, name: str) -> float | None:
        """The value of ``srcc``, ``plcc`` or ``loss``."""
        return getattr(self, name)


def move_to(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    import torch

    return {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


def evaluate_heldout(
    backbone: QAlignBackbone,
    data: Any,
    batch_size: int = 16,
    step: int = 0,
    autocast: Any = None,
    method: Method = "levels",
) -> HeldOutResult:
    """Loss, SRCC, PLCC and KL of ``backbone`` on ``data`` (a :class:`TrainingData`); restores
    the model's training mode afterwards.

    ``autocast`` is a context-manager factory (for example ``accelerator.autocast``) for
    mixed-precision runs. ``method="generate"`` scores a direct-score model by its written answers.
    """
    import contextlib

    import torch

    model = backbone.model
    was_training = model.training
    model.eval()
    total_loss, total_tokens = 0.0, 0
    scores: list[float] = []
    kls: list[float] = []
    try:
        with torch.no_grad(), autocast() if autocast else contextlib.nullcontext():
            for start in range(0, len(data), batch_size):
                examples = [data[i] for i in range(start, min(start + batch_size, len(data)))]
                batch = move_to(backbone.training_batch(examples), backbone.device)
                out = model(**batch)
                tokens = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
                total_loss += float(out.loss) * tokens
                total_tokens += tokens
                if method == "generate":
                    pred = predict_scores(
                        backbone,
                        [ex.frames for ex in examples],
                        [answer_task(ex.answer) for ex in examples],
                        [ex.kind for ex in examples],
                        method="generate",
                        batch_size=batch_size,
                    )
                    scores.extend(pred.scores.tolist())
                else:
                    level, found = backbone.answer_level_logits(batch, out.logits)
                    log_q = level.float().log_softmax(-1).cpu()
                    found_np = found.cpu().numpy()
                    # On the host in float64 (as the scorer does): CPU autocast would run a torch
                    # softmax and matmul in bfloat16.
                    scores.extend(np.where(found_np, expected_score(level_softmax(level)), np.nan).tolist())
                    for row, ex in enumerate(examples):
                        if ex.level_distribution is not None and found_np[row]:
                            p = torch.tensor([float(v) for v in ex.level_distribution])
                            kls.append(float(torch.special.xlogy(p, p).sum() - (p * log_q[row]).sum()))
    finally:
        model.train(was_training)
    targets = data.targets()
    srcc, plcc = _correlations(scores, targets) if scores else (None, None)
    return HeldOutResult(
        step=step,
        loss=total_loss / max(total_tokens, 1),
        srcc=srcc,
        n=len(data),
        plcc=plcc,
        kl=float(np.mean(kls)) if kls else None,
        failed=int(np.sum(~np.isfinite(scores))) if scores else 0,
    )


def _correlations(scores: Sequence[float], targets: Sequence[float | None]) -> tuple[float | None, float | None]:
    """(SRCC, PLCC) over the items with both a score and a target; None when undefined."""
    from scipy import stats

    s = np.asarray(scores, dtype=float)
    t = np.asarray([np.nan if v is None else v for v in targets], dtype=float)
    ok = np.isfinite(s) & np.isfinite(t)
    if ok.sum() < 3 or np.ptp(t[ok]) == 0 or np.ptp(s[ok]) == 0:
        return None, None
    rho = float(stats.spearmanr(s[ok], t[ok]).statistic)
    r = float(stats.pearsonr(s[ok], t[ok]).statistic)
    return (rho if math.isfinite(rho) else None), (r if math.isfinite(r) else None)
