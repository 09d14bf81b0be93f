"""Training losses over a backbone's training batches.

A loss takes the model to run (possibly wrapped by ``accelerate`` for distributed training),
the backbone (which knows the level tokens) and a batch from ``backbone.training_batch``, and
returns a scalar to minimise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from toolkit.errors import InputError
from toolkit.models.base import QAlignBackbone

if TYPE_CHECKING:
    import torch

LossFn = Callable[["torch.nn.Module", QAlignBackbone, dict[str, Any]], "torch.Tensor"]


def answer_cross_entropy(model: "torch.nn.Module", backbone: QAlignBackbone, batch: dict[str, Any]) -> "torch.Tensor":
    """Next-token cross-entropy on the assistant answer, one mean over the batch's answer tokens.

    The model computes it from ``labels`` (-100 outside the answer) as causal LMs do, which also
    covers backbones whose model expands image placeholders (and their labels) internally.
    """
    return model(**batch).loss


LOSSES: dict[str, LossFn] = {"ce": answer_cross_entropy}


def get_loss(name: str) -> LossFn:
    try:
        return LOSSES[name]
    except KeyError:
        raise InputError(f"unknown loss {name!r}; available: {', '.join(LOSSES)}") from None
