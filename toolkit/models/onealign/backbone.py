"""OneAlign as a :class:`~toolkit.models.base.QAlignBackbone`.

Scoring: the prompt of the HF ``score()`` method, the image (or all frames of a video) at its
one placeholder, the logits of the five level words at the last position. Items of a batch can
expand to different lengths (videos with different frame counts); they are left-padded after
the visual tokens are inserted, with positions counted over real tokens, so every row's last
position is its answer position and a batch scores exactly like its items one at a time.

Training: the reference training code's examples (template v1, labels on the answer only,
right padding with the unk id), so ``model(**batch).loss`` is the reference loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from toolkit.errors import InputError
from toolkit.models.base import InputKind, QAlignBackbone, Task, TrainingExample, Visual
from toolkit.models.onealign.conversation import collate, encode_conversation
from toolkit.models.onealign.processing import OneAlignProcessor
from toolkit.models.onealign.visual_tokens import expand_labels, split_images

if TYPE_CHECKING:
    import torch

    from toolkit.models.onealign.modeling import MPLUGOwl2LlamaForCausalLM


class OneAlignBackbone(QAlignBackbone):
    """Scoring and training batches for :class:`MPLUGOwl2LlamaForCausalLM`."""

    def __init__(self, model: MPLUGOwl2LlamaForCausalLM, processor: OneAlignProcessor) -> None:
        self.model = model
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.level_token_ids = processor.level_token_ids()
        self._prompt_ids: dict[tuple[str, str], list[int]] = {}

    @property
    def _owl(self) -> MPLUGOwl2LlamaForCausalLM:
        # ``model`` is declared as any module: training and adapter loading may put a PEFT wrapper
        # there, which forwards attribute access to the MPLUGOwl2LlamaForCausalLM it wraps.
        return cast("MPLUGOwl2LlamaForCausalLM", self.model)

    # ------------------------------------------------------------------ scoring

    def scoring_batch(self, visuals: Sequence[Visual], task: Task, kind: InputKind) -> dict[str, Any]:
        """``input_ids`` (the same prompt per row), ``attention_mask`` and ``images``: one
        (frames, 3, H, W) float32 tensor per visual, all frames of a video at the one placeholder."""
        return self._scoring_batch(visuals, task, kind, normalize=True)

    def transfer_batch(self, visuals: Sequence[Visual], task: Task, kind: InputKind) -> dict[str, Any]:
        """:meth:`scoring_batch` with uint8 ``images``, which ``level_logits`` normalises on the
        device: a quarter of the bytes through shared memory and the host-to-device copy."""
        return self._scoring_batch(visuals, task, kind, normalize=False)

    def _scoring_batch(self, visuals: Sequence[Visual], task: Task, kind: InputKind, normalize: bool) -> dict[str, Any]:
        import torch

        if not visuals:
            raise InputError("no images to score")
        key = (task, kind)
        if key not in self._prompt_ids:
            self._prompt_ids[key] = self.processor.scoring_ids(task, kind)
        images = []
        for i, frames in enumerate(visuals):
            frames = list(frames)
            if not frames:
                raise InputError(f"visual {i} has no frames")
            images.append(self.processor.preprocess(frames, normalize=normalize))
        ids = torch.tensor([self._prompt_ids[key]] * len(images), dtype=torch.long)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "images": images}

    def level_logits(self, batch: dict[str, Any]) -> torch.Tensor:
        """(B, 5) float32 logits of the level words at each row's last real position."""
        import torch

        images = batch["images"]
        if isinstance(images, torch.Tensor):
            if images.dtype == torch.uint8:
                images = self.processor.normalize(images.to(self.device, non_blocking=True))
        elif any(x.dtype == torch.uint8 for x in images):  # a transfer batch: normalise on the device
            images = [self.processor.normalize(x.to(self.device, non_blocking=True)) for x in images]
        with torch.set_grad_enabled(self.model.training and torch.is_grad_enabled()):
            merged = self._owl.prepare_multimodal_inputs(
                batch["input_ids"], images, batch.get("attention_mask"), padding_side="left"
            )
            out = self.model(
                inputs_embeds=merged["inputs_embeds"],
                modality_indicators=merged["modality_indicators"],
                attention_mask=merged["attention_mask"],
                logits_to_keep=1,
                use_cache=False,
            )
        return out.logits[:, -1, self.level_token_ids].float()

    # ------------------------------------------------------------------ training

    def training_batch(self, examples: Sequence[TrainingExample]) -> dict[str, Any]:
        """``input_ids`` (with -200), ``labels``, ``attention_mask`` and ``images``, collated like
        the reference: images stacked to (B, F, 3, H, W) when every item has the same frame
        count, else a list of (F_i, 3, H, W) tensors."""
        import torch

        if not examples:
            raise InputError("no training examples in the batch")
        encoded, images = [], []
        for i, ex in enumerate(examples):
            if not ex.frames:
                raise InputError(f"training example {i} ({ex.meta.get('id', 'no id')}) has no frames")
            try:
                encoded.append(encode_conversation(self.tokenizer, ex.question, ex.answer))
            except InputError as exc:
                raise InputError(f"training example {i} ({ex.meta.get('id', 'no id')}): {exc}") from None
            images.append(self.processor.preprocess(list(ex.frames)))
        batch: dict[str, Any] = collate(encoded, self.tokenizer.unk_token_id, self.tokenizer.model_max_length)
        same = all(x.shape == images[0].shape for x in images)
        batch["images"] = torch.stack(images) if same else images
        return batch

    def expanded_labels(self, batch: dict[str, Any]) -> torch.Tensor:
        """The labels of a training batch at the positions of the model's logits (visual
        tokens inserted as -100, rows right-padded as the model pads them)."""
        _, frames = split_images(batch["images"])
        per_frame = self._owl.config.num_visual_tokens_per_image
        return expand_labels(batch["labels"], batch["input_ids"], [n * per_frame for n in frames])

    def answer_level_logits(
        self, batch: dict[str, Any], logits: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Level logits (B, 5) where the answer's level word is predicted, and a found mask (B,).

        Pass the ``logits`` of ``model(**batch)`` to reuse that forward; gradients flow through.
        """
        from toolkit.models.hf import gather_answer_level_logits

        if logits is None:
            inputs = {k: v for k, v in batch.items() if k != "labels"}
            logits = self.model(**inputs, use_cache=False).logits
        labels = self.expanded_labels(batch).to(logits.device)
        return gather_answer_level_logits(logits, labels, self.level_token_ids)
