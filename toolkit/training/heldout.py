"""Held-out evaluation during training: answer loss and how well predicted scores rank the items.

This is a quick health check for the training log (loss on unseen conversations and the
Spearman correlation of the Q-Align score with the ground truth); the full evaluation with
confidence intervals lives in ``toolkit.evaluation``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from toolkit.levels import LEVEL_VALUES
from toolkit.models.base import QAlignBackbone
from toolkit.training.data import TrainingData

if TYPE_CHECKING:
    import torch


@dataclass
class HeldOutResult:
    step: int
    loss: float  # answer-token cross-entropy, mean over all answer tokens
    srcc: float | None  # Spearman of the expected level score vs gt_score (or the answer's level)
    n: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def move_to(batch: dict[str, Any], device: "torch.device") -> dict[str, Any]:
    import torch

    return {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


def evaluate_heldout(
    backbone: QAlignBackbone, data: TrainingData, batch_size: int = 16, step: int = 0, autocast: Any = None
) -> HeldOutResult:
    """Loss and SRCC of ``backbone`` on ``data``; restores the model's training mode afterwards.

    ``autocast`` is a context-manager factory (for example ``accelerator.autocast``) for
    mixed-precision runs.
    """
    import contextlib

    import torch

    model = backbone.model
    was_training = model.training
    model.eval()
    total_loss, total_tokens = 0.0, 0
    scores: list[float] = []
    has_level_logits = hasattr(backbone, "answer_level_logits")
    weights = torch.tensor(LEVEL_VALUES, dtype=torch.float32)
    try:
        with torch.no_grad(), (autocast() if autocast else contextlib.nullcontext()):
            for start in range(0, len(data), batch_size):
                examples = [data[i] for i in range(start, min(start + batch_size, len(data)))]
                batch = move_to(backbone.training_batch(examples), backbone.device)
                out = model(**batch)
                tokens = int((batch["labels"][:, 1:] != -100).sum())
                total_loss += float(out.loss) * tokens
                total_tokens += tokens
                if has_level_logits:
                    level, found = backbone.answer_level_logits(batch, out.logits)
                    expected = level.float().softmax(-1).cpu() @ weights
                    scores.extend(np.where(found.cpu().numpy(), expected.numpy(), np.nan).tolist())
    finally:
        model.train(was_training)
    srcc = _srcc(scores, data.targets()) if has_level_logits else None
    return HeldOutResult(step=step, loss=total_loss / max(total_tokens, 1), srcc=srcc, n=len(data))


def _srcc(scores: Sequence[float], targets: Sequence[float | None]) -> float | None:
    from scipy import stats

    s = np.asarray(scores, dtype=float)
    t = np.asarray([np.nan if v is None else v for v in targets], dtype=float)
    ok = np.isfinite(s) & np.isfinite(t)
    if ok.sum() < 3 or np.ptp(t[ok]) == 0 or np.ptp(s[ok]) == 0:
        return None
    rho = float(stats.spearmanr(s[ok], t[ok]).statistic)
    return rho if math.isfinite(rho) else None
