"""Training losses over a backbone's training batches.

A loss takes the model to run (possibly wrapped by ``accelerate`` for distributed training),
the backbone (which knows the level tokens) and a batch built by :class:`Collate`, and returns
a scalar to minimise.

``ce``
    Q-Align: next-token cross-entropy on the assistant answer ("The quality of the image is
    good.</s>"), one mean over the batch's answer tokens, as the reference computes it.
``soft``
    DeQA-Score style soft labels: at the position that predicts the level word, the KL
    divergence from the record's vote distribution (``level_probs``) to the softmax over the
    five level logits, plus the cross-entropy of the other answer tokens (the sentence around
    the level word). Records without ``level_probs`` use the one-hot distribution of their
    answer's level, so on such data ``soft`` differs from ``ce`` only in normalising over the
    five levels instead of the whole vocabulary.
``score``
    The direct-score baseline of the Q-Align paper: the answer says the score as text ("The
    quality of the image is 3.42."), trained with the same answer cross-entropy as ``ce``; the
    data loader rewrites the answers (:meth:`TrainingData.with_score_answers`). Such a model is
    scored by reading the number it writes (:mod:`toolkit.training.predict`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from toolkit.errors import InputError
from toolkit.models.base import QAlignBackbone, TrainingExample
from toolkit.qalign import IGNORE_INDEX, LEVEL_VALUES

if TYPE_CHECKING:
    import torch

LossFn = Callable[["torch.nn.Module", QAlignBackbone, dict[str, Any]], "torch.Tensor"]

TARGET_PREFIX = "target_"
"""Batch keys with this prefix carry loss targets; they are never passed to the model."""


def model_inputs(batch: dict[str, Any]) -> dict[str, Any]:
    """The batch without the loss targets."""
    return {k: v for k, v in batch.items() if not k.startswith(TARGET_PREFIX)}


class Collate:
    """``DataLoader`` collate function: the backbone's training batch, plus the five-level
    target distribution of every example when the loss needs it (``target_level_probs``) and
    the data set each example came from (``target_dataset``, for the run's draw counts)."""

    def __init__(self, backbone: QAlignBackbone, loss: str = "ce") -> None:
        self.backbone = backbone
        self.loss = loss

    def __call__(self, examples: Sequence[TrainingExample]) -> dict[str, Any]:
        import torch

        batch = self.backbone.training_batch(examples)
        if self.loss == "soft":
            batch[TARGET_PREFIX + "level_probs"] = level_targets(examples)
        batch[TARGET_PREFIX + "dataset"] = torch.tensor([int(ex.meta.get("dataset", 0)) for ex in examples])
        return batch


def level_targets(examples: Sequence[TrainingExample]) -> torch.Tensor:
    """(B, 5) target distributions in ``LEVELS`` order: ``level_distribution``, else one-hot of
    the answer's level."""
    import torch

    rows = []
    for ex in examples:
        if ex.level_distribution is not None:
            rows.append([float(p) for p in ex.level_distribution])
        elif "level" in ex.meta:
            rows.append([1.0 if value == ex.meta["level"] else 0.0 for value in LEVEL_VALUES])
        else:
            raise InputError(
                f"training example {ex.meta.get('id', '?')!r} has neither level_probs nor a level word in "
                f"its answer {ex.answer!r}; the soft-label loss needs one"
            )
    return torch.tensor(rows, dtype=torch.float32)


def answer_cross_entropy(model: torch.nn.Module, backbone: QAlignBackbone, batch: dict[str, Any]) -> torch.Tensor:
    """Next-token cross-entropy on the assistant answer, one mean over the batch's answer tokens.

    The model computes it from ``labels`` (-100 outside the answer) as causal LMs do, which also
    covers backbones whose model expands image placeholders (and their labels) internally.
    """
    return model(**model_inputs(batch)).loss


def soft_label_loss(model: torch.nn.Module, backbone: QAlignBackbone, batch: dict[str, Any]) -> torch.Tensor:
    """KL(target || softmax of the five level logits) at the level word, mean over rows, plus
    the cross-entropy of the answer's other tokens."""
    import torch
    import torch.nn.functional as F

    inputs = model_inputs(batch)
    logits = model(**inputs).logits
    labels = aligned_labels(backbone, inputs).to(logits.device)
    level_pos, found = level_positions(labels, backbone.level_token_ids)
    if not bool(found.all()):
        raise InputError("the soft-label loss needs a level word in every answer; a batch has an answer without one")
    rows = torch.arange(logits.shape[0], device=logits.device)
    ids = torch.as_tensor(backbone.level_token_ids, device=logits.device)
    level_logits = logits[rows, level_pos - 1][:, ids].float()
    target = batch[TARGET_PREFIX + "level_probs"].to(logits.device, torch.float32)
    kl = F.kl_div(
        F.log_softmax(level_logits, dim=-1), target, reduction="batchmean"
    )  # sum_k p (log p - log q), 0 log 0 = 0
    text_labels = labels.clone()
    text_labels[rows, level_pos] = IGNORE_INDEX
    shift_labels = text_labels[:, 1:]
    if not bool((shift_labels != IGNORE_INDEX).any()):
        return kl
    text = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), shift_labels.flatten(), ignore_index=IGNORE_INDEX)
    return kl + text


def aligned_labels(backbone: QAlignBackbone, batch: dict[str, Any]) -> torch.Tensor:
    """Labels at the positions of the model's logits: backbones that insert visual tokens inside
    the model (OneAlign) expand them; for the others the batch's labels already line up."""
    expand = getattr(backbone, "expanded_labels", None)
    return expand(batch) if expand is not None else batch["labels"]


def level_positions(labels: torch.Tensor, level_ids: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of the first supervised level-word token per row (B,), and whether there is one (B,)."""
    import torch

    ids = torch.as_tensor(list(level_ids), device=labels.device)
    is_level = (labels.unsqueeze(-1) == ids).any(-1)
    is_level[:, 0] = False  # position 0 has no predecessor to predict it
    return is_level.float().argmax(dim=1), is_level.any(dim=1)


LOSSES: dict[str, LossFn] = {"ce": answer_cross_entropy, "soft": soft_label_loss, "score": answer_cross_entropy}


def get_loss(name: str) -> LossFn:
    try:
        return LOSSES[name]
    except KeyError:
        raise InputError(f"unknown loss {name!r}; available: {', '.join(LOSSES)}") from None
