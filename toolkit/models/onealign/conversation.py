"""Training examples as the Q-Align reference builds them (template v1 / vicuna_v1).

The human turn gets the image tag moved to its front (``preprocess_multimodal``), the turns are
rendered as ``system + " USER: " + question + " ASSISTANT: " + answer + "</s>"``, tokenized with
the ``<|image|>`` split, and labelled with -100 on everything up to and including "ASSISTANT:"
(``preprocess_v1``). Batches are right-padded with the pad id (= the unk id, 0), labels with -100
and ``attention_mask = input_ids != pad`` (``DataCollatorForSupervisedDataset``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from toolkit.errors import InputError
from toolkit.models.onealign.processing import tokenize_with_images
from toolkit.qalign import IGNORE_INDEX, IMAGE_TAG

if TYPE_CHECKING:
    import torch

SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
ROLES = ("USER", "ASSISTANT")
SEP, SEP2 = " ", "</s>"


def human_turn(question: str) -> str:
    """``<|image|>\\n`` + the question without its tag (one image or video per example)."""
    text = question.replace(IMAGE_TAG, "").strip()
    return (IMAGE_TAG + "\n" + text).strip()


def render_v1(turns: Sequence[tuple[str, str]]) -> str:
    """The vicuna_v1 prompt of (human, assistant) turns."""
    out = SYSTEM + SEP
    for human, assistant in turns:
        out += f"{ROLES[0]}: {human}{SEP}{ROLES[1]}: {assistant}{SEP2}"
    return out


def supervised_labels(tokenizer: Any, prompt: str, input_ids: Sequence[int]) -> list[int]:
    """Labels of ``preprocess_v1``: the ids, with -100 on BOS and on every instruction part.

    Each round ("... USER: q ASSISTANT: a") is tokenized alone; its instruction length is the
    token count of "... ASSISTANT: " minus 2 (its BOS and the lone "▁" of the trailing space).
    A count that does not add up to the sequence means the tokenizer disagrees with the
    reference's assumptions; the reference then silently drops the example, here it is an error.
    """
    labels = list(input_ids)
    sep = SEP + ROLES[1] + ": "
    cur = 1
    labels[:cur] = [IGNORE_INDEX] * cur
    for round_text in prompt.split(SEP2):
        if round_text == "":
            break
        parts = round_text.split(sep)
        if len(parts) != 2:
            break
        round_len = len(tokenize_with_images(tokenizer, round_text))
        instruction_len = len(tokenize_with_images(tokenizer, parts[0] + sep)) - 2
        labels[cur : cur + instruction_len] = [IGNORE_INDEX] * len(labels[cur : cur + instruction_len])
        cur += round_len
    labels[cur:] = [IGNORE_INDEX] * len(labels[cur:])
    total = sum(1 for i in input_ids if i != tokenizer.unk_token_id)
    if cur != total:
        raise InputError(
            f"tokenization mismatch while labelling a training example ({cur} vs {total} tokens): {prompt[-120:]!r}"
        )
    return labels


@dataclass
class EncodedConversation:
    prompt: str
    input_ids: list[int]
    labels: list[int]


def encode_conversation(tokenizer: Any, question: str, answer: str) -> EncodedConversation:
    """One single-turn training example: prompt text, ids (with -200) and labels."""
    if not answer.strip():
        raise InputError(f"empty answer for question {question!r}")
    prompt = render_v1([(human_turn(question), answer)])
    ids = tokenize_with_images(tokenizer, prompt)
    return EncodedConversation(prompt, ids, supervised_labels(tokenizer, prompt, ids))


def collate(
    encoded: Sequence[EncodedConversation], pad_token_id: int, max_length: int | None
) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids`` / ``labels`` / ``attention_mask`` (truncated to ``max_length``)."""
    import torch

    longest = max(len(e.input_ids) for e in encoded)
    ids = torch.full((len(encoded), longest), pad_token_id, dtype=torch.long)
    labels = torch.full((len(encoded), longest), IGNORE_INDEX, dtype=torch.long)
    for row, e in enumerate(encoded):
        ids[row, : len(e.input_ids)] = torch.tensor(e.input_ids)
        labels[row, : len(e.labels)] = torch.tensor(e.labels)
    if max_length is not None:
        ids, labels = ids[:, :max_length], labels[:, :max_length]
    return {"input_ids": ids, "labels": labels, "attention_mask": ids.ne(pad_token_id)}
