"""The names of the subject models, apart from their code: the command line builds its choices
from them without importing scipy and the solvers."""

from __future__ import annotations

from typing import Literal, TypeGuard, get_args

ModelName = Literal["mos", "mle", "mle_co", "bt500", "p913"]
SUBJECT_MODELS: tuple[str, ...] = get_args(ModelName)
"""``mos`` plain mean; ``bt500`` BT.500 rejection then mean; ``p913`` P.913 bias removal and
rejection; ``mle`` subject model with rater bias, inconsistency and content ambiguity;
``mle_co`` the same without content ambiguity."""


def is_model_name(value: str) -> TypeGuard[ModelName]:
    """Whether ``value`` names one of ``SUBJECT_MODELS`` (narrows it to :data:`ModelName`)."""
    return value in SUBJECT_MODELS
