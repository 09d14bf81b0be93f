"""PaliGemma as a Q-Align backbone: a prefix-LM, prompted without a chat template.

PaliGemma reads a *prefix* (the image tokens, ``<bos>``, the question and a newline, as its
processor writes them) with bidirectional attention, and a *suffix* (the answer, ended by
``<eos>``) causally; ``token_type_ids`` tell the model which token is which (0 prefix, 1 suffix).
Q-Align on PaliGemma keeps that split in both directions of use:

* training: prefix = the question, suffix = the answer ("The quality of the image is good."),
  labels on exactly the suffix tokens (the answer and its ``<eos>``, as PaliGemma is trained);
* scoring: the same prefix, and the answer stem "The quality of the image is" as suffix
  tokens, so the stem sees the prefix bidirectionally but itself causally, exactly as in
  training; the level logits are read at the stem's last token.

Token types are counted from the suffix's own tokens rather than taken from the tokenizer's pair
template, so an answer token can never sit in the bidirectional prefix (where the tokens before
it would see it). Positions are checked by tokens: the scoring stem must be the first tokens of
every training answer, followed by the level word's token.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from toolkit.errors import InputError, ToolkitError
from toolkit.models.base import TrainingExample, Visual
from toolkit.models.hf import HFVisionLanguageBackbone, strip_image_placeholders
from toolkit.qalign import IGNORE_INDEX, LEVELS, InputKind, Task, answer_stem, answer_text, scoring_question

if TYPE_CHECKING:
    import torch

# Batch keys the processor returns that are not model inputs (its ``labels`` cover every token
# of type 1 and, for scoring, the stem; the backbone writes its own).
_DROPPED = ("labels",)


class PaliGemmaBackbone(HFVisionLanguageBackbone):
    """Q-Align scoring and training batches for a ``PaliGemmaForConditionalGeneration`` model."""

    def __init__(self, model: torch.nn.Module, processor: Any) -> None:
        super().__init__(model, processor)
        self._stem_cache: dict[tuple[str, str], list[int]] = {}

    def _check_prompt_format(self) -> None:
        """PaliGemma ships no chat template and needs none: its processor writes the prefix and
        suffix. It must be PaliGemma's processor (image tokens per image, <eos> after the suffix)."""
        if getattr(self.processor, "image_seq_length", None) is None or self.tokenizer.eos_token_id is None:
            raise ToolkitError("the processor is not a PaliGemma processor (it needs image_seq_length and <eos>)")

    # ------------------------------------------------------------------ prompts

    def _prefix(self, question: str, n_images: int) -> str:
        """The prefix text before the processor formats it (it adds ``<bos>`` after the images and a newline)."""
        return self.processor.image_token * n_images + question

    def _suffix_ids(self, text: str) -> list[int]:
        """Token ids of a suffix as the processor writes it: the text and ``<eos>``, tokenized alone."""
        return list(self.tokenizer(text + self.tokenizer.eos_token, add_special_tokens=False)["input_ids"])

    def stem_token_ids(self, task: Task, kind: InputKind) -> list[int]:
        """Token ids of the answer stem "The {task} of the {kind} is", checked against the answers.

        Every training answer ("... is good.") must start with exactly these tokens followed by
        the level word's single token; otherwise the scoring position would not be the position
        that predicts the level word in training.
        """
        key = (task, kind)
        if key not in self._stem_cache:
            eos = self.tokenizer.eos_token_id
            stem = self._suffix_ids(answer_stem(task, kind))
            if stem[-1:] != [eos]:
                raise ToolkitError(f"the tokenizer does not end the suffix {answer_stem(task, kind)!r} with <eos>")
            stem = stem[:-1]
            for word, level_id in zip(LEVELS, self.level_token_ids):
                answer = self._suffix_ids(answer_text(word, task, kind))
                if answer[: len(stem) + 1] != stem + [level_id]:
                    raise ToolkitError(
                        f"the answer {answer_text(word, task, kind)!r} does not tokenize as the stem "
                        f"{self.tokenizer.convert_ids_to_tokens(stem)} followed by the level word"
                    )
            self._stem_cache[key] = stem
        return self._stem_cache[key]

    def scoring_prompt(self, task: Task, kind: InputKind, n_images: int = 1) -> str:
        """The text the model reads when scoring (image placeholders unexpanded): prefix and stem."""
        key = (task, kind, n_images)
        if key not in self._prompt_cache:
            images = self.processor.image_token * n_images
            bos = self.tokenizer.bos_token or ""
            self._prompt_cache[key] = f"{images}{bos}{scoring_question(task, kind)}\n{answer_stem(task, kind)}"
        return self._prompt_cache[key]

    def _encode(
        self, prefixes: list[str], suffixes: list[str], images: list[list[Any]], padding_side: str
    ) -> dict[str, Any]:
        """The processor's prefix + suffix batch, with token types set from the suffixes' own token counts.

        Returns ``input_ids``, ``attention_mask``, ``token_type_ids`` (1 on exactly each row's suffix
        tokens, ``<eos>`` included), ``pixel_values``; the processor's ``labels`` are dropped.
        """
        import torch

        # NumPy out of the processor: it builds its labels with np.array, which warns on torch tensors.
        encoded = self.processor(
            text=prefixes, images=images, suffix=suffixes, padding=True, padding_side=padding_side, return_tensors="np"
        )
        batch = {k: torch.as_tensor(v) for k, v in encoded.items() if k not in _DROPPED}
        ids, mask = batch["input_ids"], batch["attention_mask"]
        n_suffix = torch.tensor([len(self._suffix_ids(s)) for s in suffixes])
        # The suffix is the last real tokens of a row: they end at the row's length (right
        # padding) or at the last column (left padding).
        end = mask.sum(dim=1) if padding_side == "right" else torch.full_like(n_suffix, ids.shape[1])
        pos = torch.arange(ids.shape[1]).unsqueeze(0)
        in_suffix = (pos >= (end - n_suffix).unsqueeze(1)) & (pos < end.unsqueeze(1))
        last = (end - 1).unsqueeze(1)
        if not bool((ids.gather(1, last) == self.tokenizer.eos_token_id).all()):
            raise ToolkitError("the PaliGemma processor did not end every suffix with <eos>")
        batch["token_type_ids"] = in_suffix.long()
        return batch

    # ------------------------------------------------------------------ scoring

    def scoring_batch(self, visuals: Sequence[Visual], task: Task, kind: InputKind) -> dict[str, Any]:
        """Left-padded prefixes with the answer stem as suffix; the last position of every row is
        the stem's last token, which predicts the level word."""
        if not visuals:
            raise InputError("no images to score")
        prefixes, images = [], []
        for i, frames in enumerate(visuals):
            frames = list(frames)
            if not frames:
                raise InputError(f"visual {i} has no frames")
            prefixes.append(self._prefix(scoring_question(task, kind), len(frames)))
            images.append(frames)
        stem_text = answer_stem(task, kind)
        batch = self._encode(prefixes, [stem_text] * len(prefixes), images, padding_side="left")
        # The processor ends the suffix with <eos>; the level word is predicted by the token before
        # it, so the <eos> column is cut off (it is the last column of every left-padded row).
        batch = {
            k: v[:, :-1] if k in ("input_ids", "attention_mask", "token_type_ids") else v for k, v in batch.items()
        }
        stem = self.stem_token_ids(task, kind)
        ids, types = batch["input_ids"], batch["token_type_ids"]
        tail = ids[:, -len(stem) :]
        if not bool((tail == ids.new_tensor(stem)).all()) or not bool((types[:, -len(stem) :] == 1).all()):
            raise ToolkitError(f"the scoring batch does not end in the answer stem {stem_text!r} as suffix tokens")
        return batch

    def level_logits(self, batch: dict[str, Any]) -> torch.Tensor:
        """(B, 5) float32 logits of the level words at the last position, in ``LEVELS`` order.

        Positions count real tokens from 1 (PaliGemma's convention, and what generation uses),
        so a left-padded row is read exactly as it would be alone.
        """
        import torch

        inputs = self._to_device(batch)
        if "position_ids" not in inputs:
            inputs["position_ids"] = inputs["attention_mask"].long().cumsum(dim=1).clamp(min=1)
        with torch.set_grad_enabled(self.model.training and torch.is_grad_enabled()):
            logits = self.model(**inputs, logits_to_keep=1).logits[:, -1, :]
        return logits[:, self.level_token_ids].float()

    # ------------------------------------------------------------------ training

    def training_batch(self, examples: Sequence[TrainingExample]) -> dict[str, Any]:
        """Right-padded prefix (question) + suffix (answer) rows with pixel inputs and ``labels``.

        Labels are ``IGNORE_INDEX`` except on the suffix: the answer and its ``<eos>``.
        """
        import torch

        if not examples:
            raise InputError("no training examples in the batch")
        prefixes, suffixes, images = [], [], []
        for i, ex in enumerate(examples):
            if not ex.frames:
                raise InputError(f"training example {i} ({ex.meta.get('id', 'no id')}) has no frames")
            answer = ex.answer.strip()
            if not answer:
                raise InputError(f"training example {i} ({ex.meta.get('id', 'no id')}) has an empty answer")
            prefixes.append(self._prefix(strip_image_placeholders(ex.question), len(ex.frames)))
            suffixes.append(answer)
            images.append(list(ex.frames))
        batch = self._encode(prefixes, suffixes, images, padding_side="right")
        ids = batch["input_ids"]
        batch["labels"] = torch.where(batch["token_type_ids"] == 1, ids, torch.full_like(ids, IGNORE_INDEX))
        return batch
