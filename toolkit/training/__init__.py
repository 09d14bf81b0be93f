"""Fine-tuning a backbone on Q-Align conversations: data, settings, recipes, losses, the loop,
checkpoints and its outputs.

``train(TrainConfig(...))`` is the entry point; ``qalign train`` is its command.
"""

from toolkit.training.config import DEFAULT_LORA_TARGETS, LOSS_NAMES, TrainConfig
from toolkit.training.data import TrainingData, load_training_data
from toolkit.training.heldout import HeldOutResult, evaluate_heldout
from toolkit.training.loop import TrainProgress, TrainResult, load_run_data, train
from toolkit.training.mixing import MixedTrainingData, MixtureSampler
from toolkit.training.output import read_record
from toolkit.training.recipes import RECIPES

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
