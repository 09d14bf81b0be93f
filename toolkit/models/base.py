"""The interface every Q-Align backbone implements.

A backbone wraps one vision-language model and its processor and knows the two things Q-Align
needs from it: the logits of the five level words at the position that answers the prompt
(scoring), and batches of instruction-tuning conversations with the loss on the answer only
(training). The scorer, the trainer and the evaluation code only talk to this interface, so the
native OneAlign port and any Hugging Face ``AutoModelForImageTextToText`` model are interchangeable.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from toolkit.qalign import InputKind, Task

if TYPE_CHECKING:  # heavy imports only for type checkers
    import os

    import torch
    from PIL import Image
    from transformers import PreTrainedTokenizerBase

Visual = Sequence["Image.Image"]
"""One visual input: a list of RGB frames (a still image is a list of one)."""


@dataclass
class TrainingExample:
    """One conversation turn ready for a backbone: frames, the human question, the answer text."""

    frames: list[Image.Image]
    question: str
    answer: str
    kind: InputKind = "image"
    level_distribution: Sequence[float] | None = None  # LEVELS order; for soft-label losses
    score: float | None = None  # 1-5; for the direct-score baseline
    meta: dict[str, Any] = field(default_factory=dict)


class SavesPretrained(Protocol):
    """A model that writes itself to a folder: a transformers model, or a PEFT model (its adapters)."""

    def save_pretrained(self, save_directory: str | os.PathLike[str], /, **kwargs: Any) -> None: ...


class Generates(Protocol):
    """A model that continues prompts: a transformers generation model, or a PEFT wrapper of one."""

    def generate(self, **kwargs: Any) -> object: ...


class QAlignBackbone(ABC):
    """A vision-language model that answers "The {task} of the {input} is <level>".

    ``model`` is any module: training and adapter loading replace it by a PEFT wrapper, which
    forwards attribute access to the transformers model it wraps.
    """

    model: torch.nn.Module
    tokenizer: PreTrainedTokenizerBase  # the text tokenizer (generation decodes with it)
    level_token_ids: list[int]  # in LEVELS order (excellent .. bad)

    @abstractmethod
    def scoring_batch(self, visuals: Sequence[Visual], task: Task, kind: InputKind) -> dict[str, Any]:
        """Model inputs for scoring: the prompt per visual, padded so that the answer position
        of every row can be read (left padding, or an explicit ``last_index``)."""

    def transfer_batch(self, visuals: Sequence[Visual], task: Task, kind: InputKind) -> dict[str, Any]:
        """The scoring batch in the form that is cheapest to send between processes and to the
        device (e.g. uint8 pixels, normalised on the device). ``level_logits`` accepts it; other
        uses of a batch (``model(**batch)``) may need :meth:`scoring_batch`. Default: the same."""
        return self.scoring_batch(visuals, task, kind)

    @abstractmethod
    def level_logits(self, batch: dict[str, Any]) -> torch.Tensor:
        """Raw logits of the five level tokens at the answer position, shape (batch, 5),
        computed with ``logits_to_keep=1`` where the model supports it."""

    @abstractmethod
    def training_batch(self, examples: Sequence[TrainingExample]) -> dict[str, Any]:
        """Collated inputs with ``labels`` (``IGNORE_INDEX`` everywhere but the assistant answer)."""

    @abstractmethod
    def answer_level_logits(
        self, batch: dict[str, Any], logits: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Level logits (B, 5) at the position that predicts the answer's level word under
        teacher forcing, and a found mask (B,): False, with zeros, for rows whose answer has no
        level word. ``batch`` is a :meth:`training_batch`; pass the ``logits`` of the forward over
        it to reuse that forward (gradients then flow through the result)."""

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device
