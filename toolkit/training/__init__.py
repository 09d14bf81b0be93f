"""Fine-tuning a backbone on Q-Align conversations: data, settings, the loop, its outputs.

``train(TrainConfig(...))`` is the entry point; ``qalign train`` is its command.
"""

from toolkit.training.config import DEFAULT_LORA_TARGETS, TrainConfig
from toolkit.training.data import TrainingData, load_training_data
from toolkit.training.heldout import HeldOutResult, evaluate_heldout
from toolkit.training.loop import TrainProgress, TrainResult, train
from toolkit.training.output import read_record

__all__ = [
    "DEFAULT_LORA_TARGETS",
    "HeldOutResult",
    "TrainConfig",
    "TrainProgress",
    "TrainResult",
    "TrainingData",
    "evaluate_heldout",
    "load_training_data",
    "read_record",
    "train",
]
