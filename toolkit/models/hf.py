"""Q-Align over any Hugging Face vision-language model (``AutoModelForImageTextToText``).

The backbone only relies on what every such checkpoint ships: a processor that turns text with
image placeholders plus images into model inputs, and a chat template. Prompts are rendered with
the model's own template, so the same code drives the offline tiny model and every family of
:mod:`toolkit.models.families` (Qwen-VL, SmolVLM, InternVL, LLaVA-OneVision, Gemma 3, ...).

Scoring and training share one rule that keeps them consistent: the scoring prompt is the
training conversation cut right after "The {task} of the {input} is", so the position that
predicts the level word sees the same tokens in both.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from toolkit.errors import InputError, ToolkitError
from toolkit.media import FrameTimes, frame_times
from toolkit.models.base import QAlignBackbone, TrainingExample, Visual
from toolkit.qalign import IGNORE_INDEX, IMAGE_TAG, LEVELS, InputKind, Task, answer_stem, scoring_question

if TYPE_CHECKING:
    import torch

# Image placeholders that conversation files carry inside the question text (Q-Align's tag and
# LLaVA's); the backbone puts the images itself, as the chat template wants them.
_PLACEHOLDER = re.compile(r"\s*(" + re.escape(IMAGE_TAG) + r"|<image>)\s*")


def strip_image_placeholders(question: str) -> str:
    """Remove ``<|image|>`` / ``<image>`` from a question (the backbone places the images)."""
    return _PLACEHOLDER.sub(" ", question).strip()


def level_token_ids(tokenizer: Any) -> list[int]:
    """Token id of ``" " + word`` for each level word, in ``LEVELS`` order.

    Q-Align reads one logit per level, so each word with its leading space must be one token.
    """
    ids = []
    for word in LEVELS:
        pieces = tokenizer(" " + word, add_special_tokens=False)["input_ids"]
        if len(pieces) != 1:
            raise ToolkitError(
                f"the tokenizer splits the level word {' ' + word!r} into {len(pieces)} tokens "
                f"({tokenizer.convert_ids_to_tokens(pieces)}); Q-Align needs one token per level word"
            )
        ids.append(int(pieces[0]))
    return ids


def gather_answer_level_logits(
    logits: torch.Tensor, labels: torch.Tensor, level_ids: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Level logits at the position that predicts the level word under teacher forcing.

    ``logits`` (B, T, V) and ``labels`` (B, T) must be aligned (the logits at ``t`` predict the
    token at ``t + 1``). The level word is the first supervised token that is one of
    ``level_ids``. Returns ``(level_logits (B, 5) float32, found (B,) bool)``; rows without a level
    word in their answer (for example a numeric-score answer) have ``found`` False and zeros.
    """
    import torch

    ids = torch.as_tensor(list(level_ids), device=labels.device)
    is_level = (labels.unsqueeze(-1) == ids).any(-1)
    is_level[:, 0] = False  # position 0 has no predecessor
    found = is_level.any(dim=1)
    target = is_level.float().argmax(dim=1)  # first level token per row
    pos = (target - 1).clamp(min=0)
    rows = torch.arange(logits.shape[0], device=logits.device)
    picked = logits[rows, pos.to(logits.device)][:, ids.to(logits.device)].float()
    return picked * found.to(picked.device).unsqueeze(-1), found


class HFVisionLanguageBackbone(QAlignBackbone):
    """Q-Align scoring and training batches for an ``AutoModelForImageTextToText`` model."""

    supports_native_video: ClassVar[bool] = False
    """Whether this class can give a video to the model as a video (else always as frames)."""
    native_video: bool = False
    """Videos as videos (where supported) instead of as their frames, in scoring and training alike."""

    def __init__(self, model: torch.nn.Module, processor: Any) -> None:
        self.model = model
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self._check_prompt_format()
        if self.tokenizer.pad_token_id is None:
            # Padding is masked out, so any id works; EOS is what most decoder-only models use.
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.level_token_ids = level_token_ids(self.tokenizer)
        self._prompt_cache: dict[tuple[str, str, int], str] = {}

    # ------------------------------------------------------------------ prompts

    def _check_prompt_format(self) -> None:
        """Refuse a processor this class cannot write prompts for (a subclass that prompts
        without a chat template overrides this)."""
        if (
            getattr(self.processor, "chat_template", None) is None
            and getattr(self.tokenizer, "chat_template", None) is None
        ):
            raise ToolkitError("the processor has no chat template; Q-Align prompts are rendered with it")

    def _render(self, messages: list[dict[str, Any]], add_generation_prompt: bool = False) -> str:
        return self.processor.apply_chat_template(messages, add_generation_prompt=add_generation_prompt, tokenize=False)

    def _visual_content(self, n_frames: int, kind: InputKind) -> list[dict[str, Any]]:
        """Chat-template content items for one visual: a video's frames are consecutive images, or
        one video item where this backbone gives videos to the model as videos (its
        :meth:`_model_inputs` then builds the video's inputs)."""
        if self.native_video and kind == "video":
            return [{"type": "video"}]
        return [{"type": "image"} for _ in range(n_frames)]

    def _user_turn(self, question: str, n_images: int, kind: InputKind = "image") -> dict[str, Any]:
        # Question first, then the image(s), as in the Q-Align scoring prompt.
        content: list[dict[str, Any]] = [{"type": "text", "text": question}]
        content += self._visual_content(n_images, kind)
        return {"role": "user", "content": content}

    def scoring_prompt(self, task: Task, kind: InputKind, n_images: int = 1) -> str:
        """The prompt text (image placeholders included) whose next token is the level word."""
        key = (task, kind, n_images)
        if key not in self._prompt_cache:
            prefix = answer_stem(task, kind)
            user = self._user_turn(scoring_question(task, kind), n_images, kind)
            full = self._render([user, {"role": "assistant", "content": [{"type": "text", "text": prefix}]}])
            cut = full.rfind(prefix)
            if cut >= 0:
                text = full[: cut + len(prefix)]
            else:  # a template that drops or rewrites assistant text: prompt + prefix by hand
                gen = self._render([user], add_generation_prompt=True)
                text = gen + ("" if gen[-1:].isspace() else " ") + prefix
            self._prompt_cache[key] = text
        return self._prompt_cache[key]

    # ------------------------------------------------------------------ scoring

    def _to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        import torch

        dtype = next(self.model.parameters()).dtype
        out = {}
        for k, v in batch.items():
            if isinstance(v, torch.Tensor):
                v = v.to(self.device, dtype=dtype) if v.is_floating_point() else v.to(self.device)
            out[k] = v
        return out

    def scoring_batch(self, visuals: Sequence[Visual], task: Task, kind: InputKind) -> dict[str, Any]:
        """Left-padded prompts with their images: the last position of every row is the answer position."""
        if not visuals:
            raise InputError("no images to score")
        texts, images, times = [], [], []
        for i, visual in enumerate(visuals):
            frames = list(visual)
            if not frames:
                raise InputError(f"visual {i} has no frames")
            texts.append(self.scoring_prompt(task, kind, len(frames)))
            images.append(frames)
            times.append(frame_times(visual))
        return self._model_inputs(texts, images, [kind] * len(texts), "left", times)

    def _model_inputs(
        self,
        texts: list[str],
        visuals: list[list[Any]],
        kinds: Sequence[InputKind],
        padding_side: str,
        times: Sequence[FrameTimes],
    ) -> dict[str, Any]:
        """Model inputs of rendered ``texts`` (placeholders unexpanded) and their frames, padded on one
        side. ``times`` says when each visual's frames were taken; only a backbone that gives videos
        to the model as videos, telling it those times, reads them."""
        # The chat template already wrote any BOS: the processor must not add another.
        batch = self.processor(
            text=texts,
            images=visuals,
            padding=True,
            padding_side=padding_side,
            add_special_tokens=False,
            return_tensors="pt",
        )
        return dict(batch)

    def level_logits(self, batch: dict[str, Any]) -> torch.Tensor:
        """(B, 5) float32 logits of the level words at the last position, in ``LEVELS`` order.

        Runs without autograd unless the model is in training mode.
        """
        import torch

        inputs = self._to_device(batch)
        with torch.set_grad_enabled(self.model.training and torch.is_grad_enabled()):
            logits = self.model(**inputs, logits_to_keep=1).logits[:, -1, :]
        return logits[:, self.level_token_ids].float()

    # ------------------------------------------------------------------ training

    def training_batch(self, examples: Sequence[TrainingExample]) -> dict[str, Any]:
        """Right-padded conversations with pixel inputs and ``labels``.

        Labels are ``IGNORE_INDEX`` except on the assistant answer and the template's end-of-turn token(s).
        """
        import torch

        if not examples:
            raise InputError("no training examples in the batch")
        texts, images, times, prompt_lens = [], [], [], []
        for i, ex in enumerate(examples):
            if not ex.frames:
                raise InputError(f"training example {i} ({ex.meta.get('id', 'no id')}) has no frames")
            user = self._user_turn(strip_image_placeholders(ex.question), len(ex.frames), ex.kind)
            answer = ex.answer.strip()
            full = self._render([user, {"role": "assistant", "content": [{"type": "text", "text": answer}]}]).rstrip()
            start = full.rfind(answer)
            if start < 0:
                raise ToolkitError(f"the chat template does not reproduce the answer text {answer!r}")
            texts.append(full)
            images.append(list(ex.frames))
            times.append(frame_times(ex.frames))
            prompt_lens.append(self._prompt_token_count(full, start))

        batch = self._model_inputs(texts, images, [ex.kind for ex in examples], "right", times)
        ids, mask = batch["input_ids"], batch["attention_mask"]
        lengths = mask.sum(dim=1)
        # Image placeholders are expanded by the processor; they all lie in the prompt, so the
        # answer is the last (text length - prompt length) real tokens of each row.
        text_lens = torch.tensor([len(self.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts])
        n_answer = text_lens - torch.tensor(prompt_lens)
        pos = torch.arange(ids.shape[1]).unsqueeze(0)
        supervised = (pos >= (lengths - n_answer).unsqueeze(1)) & (pos < lengths.unsqueeze(1))
        batch["labels"] = torch.where(supervised, ids, torch.full_like(ids, IGNORE_INDEX))
        return batch

    def _prompt_token_count(self, full: str, answer_start: int) -> int:
        """Tokens (placeholders unexpanded) of ``full`` that precede the answer.

        Tokenizers may merge the whitespace before the answer into its first token ("ASSISTANT:"
        + " The"); the split point is moved back over that whitespace so that the prompt's tokens
        are a prefix of the conversation's tokens, as the scoring prompt's are.
        """
        tok = self.tokenizer
        full_ids = tok(full, add_special_tokens=False)["input_ids"]
        for cut in (answer_start, len(full[:answer_start].rstrip())):
            prompt_ids = tok(full[:cut], add_special_tokens=False)["input_ids"]
            if full_ids[: len(prompt_ids)] == prompt_ids:
                return len(prompt_ids)
        raise ToolkitError(f"cannot split the tokenized conversation into prompt and answer: {full!r}")

    def answer_level_logits(
        self, batch: dict[str, Any], logits: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Level logits (B, 5) where the answer's level word is predicted, and a found mask (B,).

        Pass the ``logits`` of a forward over ``batch`` (a training batch) to avoid a second
        forward; gradients flow through them, so a soft-label loss can use the result directly.
        """
        if logits is None:
            inputs = {k: v for k, v in self._to_device(batch).items() if k != "labels"}
            logits = self.model(**inputs).logits
        return gather_answer_level_logits(logits, batch["labels"].to(logits.device), self.level_token_ids)
