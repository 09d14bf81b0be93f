"""Fine-tuning a backbone on Q-Align conversations: data, settings, recipes, losses, the loop,
checkpoints and its outputs.

``train(TrainConfig(...))`` is the entry point; ``qalign train`` is its command.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from toolkit.training.config import DEFAULT_LORA_TARGETS, LOSS_NAMES, TrainConfig
from toolkit.training.recipes import RECIPES

if TYPE_CHECKING:
    from toolkit.training.data import TrainingData, load_training_data
    from toolkit.training.heldout import HeldOutResult, evaluate_heldout
    from toolkit.training.loop import TrainProgress, TrainResult, load_run_data, train
    from toolkit.training.mixing import MixedTrainingData, MixtureSampler
    from toolkit.training.output import read_record

# The settings load without torch: every ``qalign`` command builds the options of ``qalign train``
# from TrainConfig at start-up, so the loop and its dependencies are imported on first use only.
_LAZY = {
    "TrainingData": "data",
    "load_training_data": "data",
    "HeldOutResult": "heldout",
    "evaluate_heldout": "heldout",
    "TrainProgress": "loop",
    "TrainResult": "loop",
    "load_run_data": "loop",
    "train": "loop",
    "MixedTrainingData": "mixing",
    "MixtureSampler": "mixing",
    "read_record": "output",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)


__all__ = [
    "DEFAULT_LORA_TARGETS",
    "LOSS_NAMES",
    "RECIPES",
    "HeldOutResult",
    "MixedTrainingData",
    "MixtureSampler",
    "TrainConfig",
    "TrainProgress",
    "TrainResult",
    "TrainingData",
    "evaluate_heldout",
    "load_run_data",
    "load_training_data",
    "read_record",
    "train",
]
