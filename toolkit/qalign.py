"""The Q-Align contract: what a rater model is asked, how it answers, and how the answer is read.

Every layer that builds a prompt, writes a training answer, parses one, or turns level logits into a
score takes the wording and the arithmetic from here, so the converter, the trainer and the scorer
cannot drift apart. The facts (Wu et al., 2023, and the released OneAlign code):

* two tasks, *quality* and *aesthetics*, on two input kinds, *image* and *video*;
* five level words, best first (``LEVELS``), worth 5..1 (``LEVEL_VALUES``);
* the scoring prompt asks "How would you rate the {task} of this {kind}?" and pre-fills the
  answer stem "The {task} of the {kind} is"; the next token is the level word;
* the score is the expectation of the softmax over the five level-word logits only (the
  close-set softmax), weighted 5..1.

Order convention: every per-level vector in the toolkit (probabilities, soft labels, vote counts)
runs in ``LEVELS`` order, excellent first. External formats that count bad first (KonIQ-10k's
``c1..c5``) are turned around where they are read.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Literal, TypeGuard, get_args

import numpy as np

from toolkit.errors import InputError

if TYPE_CHECKING:
    import torch

# --------------------------------------------------------------------------- vocabularies

Task = Literal["quality", "aesthetics"]
TASKS: tuple[str, ...] = get_args(Task)
"""What a Q-Align model rates."""

InputKind = Literal["image", "video"]
INPUT_KINDS: tuple[InputKind, ...] = get_args(InputKind)
"""What a Q-Align model looks at: one image, or the frames of one video."""

LEVELS: tuple[str, ...] = ("excellent", "good", "fair", "poor", "bad")
"""The five ITU-R BT.500 level words, best first: the order of every per-level vector."""

LEVEL_VALUES: tuple[int, ...] = (5, 4, 3, 2, 1)
"""Numeric value of each word in ``LEVELS``; the weights of the 1-5 Q-Align score."""

PROB_COLUMNS: tuple[str, ...] = tuple(f"p_{word}" for word in LEVELS)
"""Columns of a level distribution (model output or soft label), in ``LEVELS`` order."""

COUNT_COLUMNS: tuple[str, ...] = tuple(f"votes_{word}" for word in LEVELS)
"""Columns of a vote histogram (votes per level), in ``LEVELS`` order."""

IMAGE_TAG = "<|image|>"
"""Where the visual goes in a conversation's human turn (the reference JSON format)."""

IGNORE_INDEX = -100
"""Label of token positions that carry no loss (PyTorch's cross-entropy default)."""

ONEALIGN_MODEL_TYPE = "mplug_owl2"
"""``model_type`` of a OneAlign / Q-Align checkpoint's ``config.json``."""


def is_task(value: str) -> TypeGuard[Task]:
    """Whether ``value`` is one of ``TASKS`` (narrows it to :data:`Task`)."""
    return value in TASKS


def is_kind(value: str) -> TypeGuard[InputKind]:
    """Whether ``value`` is one of ``INPUT_KINDS`` (narrows it to :data:`InputKind`)."""
    return value in INPUT_KINDS


def check_task(task: str) -> Task:
    """``task`` if it is one of ``TASKS``; otherwise an error naming the choices."""
    if not is_task(task):
        raise InputError(f"unknown task {task!r}; use {' or '.join(map(repr, TASKS))}")
    return task


def check_kind(kind: str) -> InputKind:
    """``kind`` if it is one of ``INPUT_KINDS``; otherwise an error naming the choices."""
    if not is_kind(kind):
        raise InputError(f"unknown input kind {kind!r}; use {' or '.join(map(repr, INPUT_KINDS))}")
    return kind


# --------------------------------------------------------------------------- wording

QUESTION_TEMPLATE = "How would you rate the {task} of this {kind}?"
"""The scoring question with its two slots (the study store keeps it with a ``{kind}`` slot open)."""


def scoring_question(task: Task = "quality", kind: InputKind = "image") -> str:
    """The user turn of the scoring prompt: ``'How would you rate the quality of this image?'``."""
    return QUESTION_TEMPLATE.format(task=check_task(task), kind=check_kind(kind))


def answer_stem(task: Task = "quality", kind: InputKind = "image") -> str:
    """The pre-filled assistant text whose next token is the level word: ``'The quality of the image is'``."""
    return f"The {check_task(task)} of the {check_kind(kind)} is"


def answer_text(level: str, task: Task = "quality", kind: InputKind = "image") -> str:
    """The training answer: ``'The quality of the image is good.'``."""
    if level not in LEVELS:
        raise InputError(f"unknown level word {level!r}; expected one of {', '.join(LEVELS)}")
    return f"{answer_stem(task, kind)} {level}."


LEVEL_WORD_PATTERN = re.compile(r"\b(" + "|".join(LEVELS) + r")\b", re.IGNORECASE)
"""A level word anywhere in a text (group 1)."""

ANSWER_PATTERN = re.compile(r"\bthe (" + "|".join(TASKS) + r") of the (image|video|picture) is\b", re.IGNORECASE)
"""The answer stem (group 1: task, group 2: input kind; reference data sometimes say "picture")."""


def answer_level(answer: str) -> int | None:
    """Level value (5..1) of the first level word in an answer, or None if it names none."""
    match = LEVEL_WORD_PATTERN.search(answer)
    return LEVEL_VALUES[LEVELS.index(match.group(1).lower())] if match else None


def answer_task(answer: str) -> Task:
    """The task an answer rates ("The aesthetics of the image is ..."); quality when it names none."""
    match = ANSWER_PATTERN.search(answer)
    return "aesthetics" if match and match.group(1).lower() == "aesthetics" else "quality"


# --------------------------------------------------------------------------- scoring arithmetic


def level_softmax(logits: np.ndarray | torch.Tensor) -> np.ndarray:
    """Close-set softmax over the five level logits (last axis in ``LEVELS`` order), in float64.

    Computed in float64 on the host, so a bfloat16 model's logits give the same probabilities
    whichever device produced them.
    """
    if not isinstance(logits, np.ndarray):  # a torch tensor, on any device and in any dtype
        logits = logits.detach().float().cpu().numpy()
    z = np.asarray(logits, dtype=np.float64)
    if z.shape[-1] != len(LEVELS):
        raise InputError(f"level logits must have {len(LEVELS)} entries on the last axis, got shape {z.shape}")
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def expected_score(probs: np.ndarray | list[float]) -> np.ndarray:
    """The 1-5 Q-Align score of level distributions (last axis in ``LEVELS`` order)."""
    return np.asarray(probs, dtype=np.float64) @ np.asarray(LEVEL_VALUES, dtype=np.float64)
