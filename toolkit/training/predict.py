"""Scores of a trained model on in-memory examples, for both kinds of model a run can produce.

A level model (``ce`` or ``soft`` loss) is scored the Q-Align way: the scoring prompt, the five
level logits at the answer position, the expectation of their softmax (1-5).

A direct-score model (``score`` loss) is scored by what it writes: greedy decoding after the
same scoring prompt ("... The quality of the image is"), and the first number in the generated
text. Greedy decoding is deterministic and is what the paper's baseline does; an answer without
a number is a failed item (NaN), counted by the caller rather than hidden.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np

from toolkit.errors import ToolkitError
from toolkit.models.base import Generates, QAlignBackbone, Visual
from toolkit.qalign import InputKind, Task, expected_score, level_softmax

if TYPE_CHECKING:
    import torch

Method = Literal["levels", "generate"]

_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")


def parse_score(text: str) -> float:
    """The first number in ``text``, or NaN when there is none."""
    m = _NUMBER.search(text)
    return float(m.group(0)) if m else float("nan")


@dataclass
class Predictions:
    scores: np.ndarray  # (n,) 1-5 for level models; the written number (NaN if none) for score models
    texts: list[str] = field(default_factory=list)  # generated answers (generate only)

    @property
    def failed(self) -> int:
        return int((~np.isfinite(self.scores)).sum())


def predict_scores(
    backbone: QAlignBackbone,
    visuals: Sequence[Visual],
    tasks: Sequence[Task],
    kinds: Sequence[InputKind],
    method: Method = "levels",
    batch_size: int = 8,
    max_new_tokens: int = 8,
) -> Predictions:
    """Score every visual (a list of frames) for its task and kind; items are batched by
    (task, kind) because one scoring batch has one prompt."""
    import torch

    n = len(visuals)
    scores = np.full(n, np.nan)
    texts = [""] * n
    # Generation also groups by frame count: a KV cache needs every row of a batch to expand to
    # the same number of visual tokens.
    groups: dict[tuple[Task, InputKind, int], list[int]] = {}
    for i, (task, kind) in enumerate(zip(tasks, kinds)):
        groups.setdefault((task, kind, len(visuals[i]) if method == "generate" else 0), []).append(i)
    model = backbone.model
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for (task, kind, _), idx in groups.items():
                for start in range(0, len(idx), batch_size):
                    chunk = idx[start : start + batch_size]
                    batch = backbone.scoring_batch([visuals[i] for i in chunk], task, kind)
                    if method == "levels":
                        # The scorer's arithmetic, so a trained model's held-out scores are its scores.
                        scores[chunk] = expected_score(level_softmax(backbone.level_logits(batch)))
                    else:
                        for i, text in zip(chunk, generate_answers(backbone, batch, max_new_tokens)):
                            texts[i] = text
                            scores[i] = parse_score(text)
    finally:
        model.train(was_training)
    return Predictions(scores, texts if method == "generate" else [])


def generate_answers(backbone: QAlignBackbone, batch: dict[str, Any], max_new_tokens: int = 8) -> list[str]:
    """Greedy continuations of a scoring batch (prompts ending in "The {task} of the {input} is")."""
    import torch

    tokenizer = backbone.tokenizer
    inputs = _to_device(batch, backbone.device, next(backbone.model.parameters()).dtype)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    # A generation model, or a PEFT wrapper that forwards ``generate`` to one; ``model`` is declared
    # as a plain module because wrappers replace it.
    model = cast(Generates, backbone.model)
    out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad)
    if not isinstance(out, torch.Tensor):  # a generation config with return_dict_in_generate
        raise ToolkitError(f"generate returned a {type(out).__name__}, not the token ids")
    new = out[:, inputs["input_ids"].shape[1] :]
    return [t.strip() for t in tokenizer.batch_decode(new, skip_special_tokens=True)]


def _to_device(batch: dict[str, Any], device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    import torch

    def move(v: Any) -> Any:
        if isinstance(v, torch.Tensor):
            return v.to(device, dtype=dtype) if v.is_floating_point() else v.to(device)
        if isinstance(v, (list, tuple)):
            return type(v)(move(x) for x in v)
        return v

    return {k: move(v) for k, v in batch.items()}
