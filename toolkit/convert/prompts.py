"""The question paraphrases of Q-Align's training data (the answer sentence is
:func:`toolkit.qalign.answer_text`).

The nine questions are the image-quality pool of the reference data; the video pool says
"video" where the image pool says "image" or "picture", and the aesthetics pool says
"aesthetics" where it says "quality". A question is drawn per record with a seeded generator, so
the same input and seed always give the same file.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from toolkit.errors import InputError
from toolkit.qalign import IMAGE_TAG, InputKind, Task, check_kind, check_task, scoring_question

IQA_QUESTIONS: tuple[str, ...] = (
    scoring_question("quality", "image"),  # the scoring prompt's question is one of the pool
    "What do you think about the quality of this image?",
    "How do you assess the quality of this image?",
    "Can you rate the quality of this picture?",
    "Rate the quality of this image.",
    "How would you judge the quality of this image?",
    "Could you evaluate the quality of this image?",
    "What's your opinion on the quality of this picture?",
    "What is your quality rating for this image?",
)


def question_pool(task: Task = "quality", kind: InputKind = "image") -> tuple[str, ...]:
    """The paraphrases for one task and input kind."""
    check_task(task)
    check_kind(kind)
    pool = IQA_QUESTIONS
    if kind == "video":
        pool = tuple(q.replace("image", "video").replace("picture", "video") for q in pool)
    if task == "aesthetics":
        pool = tuple(q.replace("quality", "aesthetics") for q in pool)
    return pool


def draw_questions(
    count: int,
    task: Task = "quality",
    kind: InputKind = "image",
    seed: int = 0,
    pool: Sequence[str] | None = None,
) -> list[str]:
    """``count`` questions drawn uniformly with ``numpy.random.default_rng(seed)`` from ``pool``
    (default: :func:`question_pool` of the task and input kind)."""
    pool = tuple(pool) if pool is not None else question_pool(task, kind)
    if not pool:
        raise InputError("the question pool is empty")
    picks = np.random.default_rng(seed).integers(0, len(pool), size=count)
    return [pool[i] for i in picks]


def human_turn(question: str) -> str:
    """The human message: question, newline, image placeholder (as in the reference JSONs)."""
    return f"{question}\n{IMAGE_TAG}"
